"""Every error pygguf raises on purpose is a `PyggufError`, so a front end catches
`(PyggufError, OSError)` and prints one line. The library's own errors live here, at the bottom
of the package, so that any layer can raise or catch them without importing another layer (and
catching a chat-template error does not import jinja2). Tools define theirs beside them, as
subclasses of PyggufError too.

The C status codes are named once, in csrc/api (PG_EBADTYPE ...); their messages are here, once.
"""
from __future__ import annotations


class PyggufError(Exception):
    """Base of every error pygguf reports: its message is one line meant for the user."""


# ---- files and models ------------------------------------------------------------------------

class GGUFError(PyggufError, ValueError):
    """A GGUF file is malformed, hostile or unsupported; the message names the file."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class GGUFTruncatedError(GGUFError):
    """The file ends before something it declares."""


class GGUFUnsupportedError(GGUFError):
    """A well-formed file that pygguf does not handle (version, byte order, tensor type)."""


class ModelError(PyggufError, ValueError):
    """A model file pygguf cannot run, or a bad request to a loaded model: the message names the
    key, tensor, architecture or argument."""


class StateError(PyggufError, ValueError):
    """A saved state (prompt cache, Llama.save_state) that cannot be used: not one, truncated,
    corrupt, or inconsistent with the model; the message names the file and the reason."""


class StateMismatch(StateError):
    """An intact saved state of another model or other settings (-c, cache types, RoPE)."""


class ContextTooLarge(ModelError):
    """A context that cannot be allocated: past the loader's limit, or a KV cache beyond the memory
    available. The message names the API's `n_ctx`; a front end names its own flag with
    `naming("-c")`."""

    def __init__(self, n_ctx: int, reason: str):
        self.n_ctx, self.reason = n_ctx, reason
        super().__init__(self.naming("n_ctx"))

    def naming(self, flag: str) -> str:
        return f"{flag}{' ' if flag.startswith('-') else '='}{self.n_ctx} {self.reason}"


class KernelError(PyggufError, RuntimeError):
    """A C kernel refused its arguments."""


class TokenizerError(PyggufError, ValueError):
    """Tokenizer metadata that cannot be used (missing, mis-typed or inconsistent)."""


# ---- requests --------------------------------------------------------------------------------

class BadValue(PyggufError, ValueError):
    """A parameter's value outside what it accepts: `field` names the parameter (a front end maps
    it to its own spelling, e.g. the CLI's flag), `shown` is the value as text (never str() of a
    huge int), `problem` says what is accepted."""

    def __init__(self, field: str, value, problem: str):
        self.field, self.shown, self.problem = field, shown_value(value), problem
        super().__init__(f"{field} = {self.shown}: {problem}")


def shown_value(value) -> str:
    """A value for a message: short, one line, and safe for ints too long for str()."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 256 else f"an integer of about {value.bit_length() * 3 // 10} digits"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    return f"a {type(value).__name__}"


class SamplerError(PyggufError, ValueError):
    """Bad sampler parameters or input (the message says which and why)."""


class SamplerValueError(SamplerError, BadValue):
    """A SamplerParams field out of range (llama.cpp's ranges): `field` is the field's name."""


class ContextValueError(ModelError, BadValue):
    """A model/context argument out of range (n_ctx, n_batch, n_ubatch, threads, RoPE)."""


class GrammarError(PyggufError, ValueError):
    """A GBNF grammar llama.cpp would refuse (or one past pygguf's size limits), or input the
    matcher rejects: llama.cpp's reason, then where, on one line. `reason` is llama.cpp's text; `line`, `column` (1-based, characters)
    and `offset` (into the UTF-8 bytes) say where, or are None when the error has no one place."""
    reason: str | None = None
    line: int | None = None
    column: int | None = None
    offset: int | None = None


class ChatTemplateError(PyggufError):
    """A chat template that cannot be compiled or rendered, or that tried to escape the sandbox."""


class TemplateRewritesHistory(ChatTemplateError):
    """Adding a message changed the rendering of earlier ones: no suffix can be appended."""


class GenerationError(PyggufError):
    """A request the engine cannot start (empty prompt, prompt longer than the context)."""


class PromptTooLong(GenerationError):
    def __init__(self, n_tokens: int, max_tokens: int):
        super().__init__(f"prompt is too long ({n_tokens} tokens, max {max_tokens})")
        self.n_tokens = n_tokens
        self.max_tokens = max_tokens


class EmptyPrompt(GenerationError):
    pass


class NonFiniteLogits(PyggufError, ArithmeticError):
    """The logits to sample from hold a NaN or +inf, or are all -inf (a corrupt weight, a RoPE
    setting that overflows): no token can be drawn from them, so the generation stops here."""


# ---- C status codes --------------------------------------------------------------------------

# by the names of csrc/api's enum: the numbers are read from the extension, never written here
_C_STATUS_MESSAGES = {
    "PG_EBADTYPE": "unsupported tensor type",
    "PG_EBADSIZE": "shape or extent out of range (not whole blocks, or past the end of the data)",
    "PG_ENOKERNEL": "no kernel for this type in this build",
    "PG_EBADISA": "instruction set not supported by this CPU",
    "PG_ENOMEM": "out of memory",
    "PG_EBADARG": "bad argument",
    "PG_EBUSY": "the model or thread pool is in use by another thread (a Llama shared between threads takes turns; a bare Model does not)",
    "PG_EGRAMMAR_RULES": "malformed grammar rules",
    "PG_EGRAMMAR_RECURSION": "a grammar rule reaches itself without consuming input (left recursion)",
    "PG_EGRAMMAR_EMPTY": "the grammar's root matches no input",
    "PG_EGRAMMAR_STACKS": "too many grammar stacks (an ambiguous grammar)",
    "PG_EGRAMMAR_LIMIT": "the grammar's caches passed their memory limit",
    "PG_EGRAMMAR_REJECTED": "rejected by the grammar",
}


def c_status_message(rc: int) -> str:
    """The message of a C status code (the C extension is imported only when one is reported)."""
    from pygguf._native import lib
    for name, message in _C_STATUS_MESSAGES.items():
        if getattr(lib, name) == rc:
            return message
    return f"error {rc}"
