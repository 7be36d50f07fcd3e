"""--prompt-cache FILE, --prompt-cache-all, --prompt-cache-ro: llama.cpp main's session file.

    pygguf --prompt-cache p.bin -f long.txt -n 32     # evaluates the prompt, saves p.bin after it
    pygguf --prompt-cache p.bin -f long.txt -n 32     # reloads it: only the last prompt token runs

At start the file (if there is one and it is not empty) is checked and loaded into the engine's
slot 0 (pygguf.model.state: another model, -c, cache types or RoPE settings are refused naming
the difference; a corrupt or truncated file is refused). The prompt then reuses its longest
common prefix with the file's tokens like any cached prefix, and the log says how much matched,
in llama.cpp's words. Without -p/-f, the file's tokens are the prompt ("using full prompt from
session file"). After the prompt is evaluated, before generation goes on, its state is written
(atomically) when the prompt had tokens the file lacked; --prompt-cache-all also writes the
generated part at the end (not after a context shift, as llama.cpp); --prompt-cache-ro never
writes. Interactive modes, as llama.cpp's: the file is loaded and the first prompt (-p/-f, or a
template's system and first user turns) reuses it and is saved once evaluated, before the first
user input; later input is never saved, and --prompt-cache-all is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click

from pygguf.errors import StateError
from pygguf.generation.engine import common_prefix
from pygguf.model import state

from .options import _bundle, _given, spellings
from .output import log


@dataclass(frozen=True)
class PromptCacheParams:
    path: Path | None = None        # the session file; None: no prompt cache
    save_all: bool = False          # also save the generated tokens at the end
    read_only: bool = False         # load, never write


_PROMPT_CACHE_OPTIONS = [
    ("prompt_cache", click.option(*spellings("--prompt-cache"), "prompt_cache", type=click.Path(path_type=Path),
                                  metavar="FNAME", help="file to cache prompt state for faster startup (default: none)")),
    ("prompt_cache_all", click.option(*spellings("--prompt-cache-all"), "prompt_cache_all", is_flag=True, default=None,
                                      help="also save the generated text to the prompt cache (not in interactive modes)")),
    ("prompt_cache_ro", click.option(*spellings("--prompt-cache-ro"), "prompt_cache_ro", is_flag=True, default=None,
                                     help="use the prompt cache but do not update it")),
]


def _build_prompt_cache(values: dict) -> PromptCacheParams:
    return PromptCacheParams(**_given({"path": values["prompt_cache"], "save_all": values["prompt_cache_all"],
                                       "read_only": values["prompt_cache_ro"]}))


prompt_cache_options = _bundle("prompt_cache", _PROMPT_CACHE_OPTIONS, _build_prompt_cache)


class PromptCache:
    """One run's session file: loaded into the engine's slot 0 at start, saved after the prompt
    and (--prompt-cache-all) at the end. Inactive (every method does nothing) without a path.
    `engine` may be given later (an interactive session sets its own)."""

    def __init__(self, params: PromptCacheParams, engine=None, say: Callable[[str], None] = log):
        self.params = params
        self.engine = engine
        self.say = say
        self.session_tokens: list[int] = []
        self.prompt_tokens: list[int] = []
        self.save_prompt = False

    @property
    def path(self) -> Path | None:
        return self.params.path

    def load(self) -> list[int]:
        """The session file's tokens, now in slot 0 (none when there is no file, or it is empty)."""
        if self.path is None:
            return []
        self.say(f"main: attempting to load saved session from '{self.path}'")
        if not self.path.exists():
            if not self.params.read_only and not self.path.parent.is_dir():   # found now, not after the prompt
                raise StateError(f"--prompt-cache {self.path}: directory {self.path.parent} does not exist")
            self.say("main: session file does not exist, will create.")
        elif self.path.is_dir():
            raise StateError(f"--prompt-cache {self.path}: is a directory")
        elif self.path.stat().st_size == 0:
            self.say("main: The session file is empty. A new session will be initialized.")
        else:
            self.session_tokens = self.engine.load_state(state.read_file(self.path), slot=0,
                                                         source=f"--prompt-cache {self.path}")
            self.say(f"main: loaded a session with prompt size of {len(self.session_tokens)} tokens")
        return self.session_tokens

    def match(self, prompt_tokens: list[int], prompt_given: bool) -> None:
        """Say how much of the prompt the file holds; decide whether the prompt will be saved."""
        self.prompt_tokens = list(prompt_tokens)
        if self.path is None or not prompt_tokens:     # an interactive session waiting for its first input
            return
        n_match, n = common_prefix(self.session_tokens, prompt_tokens), len(prompt_tokens)
        if self.session_tokens:
            if not prompt_given and n_match == n:
                self.say("main: using full prompt from session file")
            elif n_match >= n:
                self.say("main: session file has exact match for prompt!")
            elif n_match < n // 2:
                self.say(f"main: session file has low similarity to prompt ({n_match} / {n} tokens); "
                     "will mostly be reevaluated")
            else:
                self.say(f"main: session file matches {n_match} / {n} tokens of prompt")
        self.save_prompt = n_match < n and not self.params.read_only

    def after_step(self, slot) -> None:
        """Called between steps: once slot 0 holds the whole prompt, save it (once)."""
        if not self.save_prompt:
            return
        n = len(self.prompt_tokens)
        if len(slot.cached) >= n and slot.cached[:n] == self.prompt_tokens:
            self._write(self.engine.state_parts(slot.index, n))
            self.save_prompt = False

    def finish(self, slot, generated: list[int], interrupted: bool = False) -> None:
        """--prompt-cache-all: the evaluated prompt and generated tokens saved at the end (not after
        Ctrl+C, which ends llama.cpp's main at once)."""
        if self.path is None or not self.params.save_all or self.params.read_only or interrupted:
            return
        expected = self.prompt_tokens + list(generated)
        if slot.cached != expected[:len(slot.cached)]:       # shifted: positions no longer the tokens'
            self.say("main: the context was shifted: the final session is not saved")
            return
        self.say(f"\nmain: saving final output to session file '{self.path}'")
        self._write(self.engine.state_parts(slot.index))
        self.say(f"saved final session to {self.path}, n_tokens = {len(slot.cached)}")


    def _write(self, parts) -> None:
        try:
            state.write_file(self.path, parts)
        except OSError as e:
            raise StateError(f"--prompt-cache {self.path}: cannot write: {e.strerror or e}") from None


def check_interactive(params: PromptCacheParams) -> None:
    """llama.cpp refuses --prompt-cache-all in interactive mode (its words)."""
    if params.path is not None and params.save_all:
        raise StateError("--prompt-cache-all not supported in interactive mode yet")

