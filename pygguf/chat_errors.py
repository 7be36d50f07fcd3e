"""The chat-template errors, apart from pygguf.chat so that catching them does not import jinja2
(the CLI lists them among its one-line errors even for a plain completion)."""
from __future__ import annotations


class ChatTemplateError(Exception):
    """A chat template that cannot be compiled or rendered, or that tried to escape the sandbox."""


class TemplateRewritesHistory(ChatTemplateError):
    """Adding a message changed the rendering of earlier ones: no suffix can be appended."""
