"""The Jinja sandbox a GGUF's chat template is compiled and rendered in.

The template comes from an untrusted file (rendering one unsandboxed was a remote-code-execution
bug in llama-cpp-python), so:
- any attempt to reach Python internals raises before anything runs (Jinja's immutable sandbox,
  made strict: a blocked attribute is an error, not an Undefined a template could test);
- every operation that could allocate without bound is sized first and refused past a limit, and
  a compile or render past its time is stopped wherever it is (pygguf.chat.limits);
- every failure of any kind is one ChatTemplateError, one line long.
"""
from __future__ import annotations

import datetime
import functools
import json
import types

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.filters import FILTERS, make_attrgetter
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import generate_lorem_ipsum
from markupsafe import Markup

from pygguf.chat import limits
from pygguf.chat.limits import (
    TemplateLimitError,
    bounded_concat,
    bounded_join,
    bounded_str,
    check_format_spec,
    check_items,
    check_printf,
    check_text,
    replaced_size,
    text_size,
    within_deadline,
)
from pygguf.errors import ChatTemplateError

MAX_TEMPLATE_CHARS = 256 << 10  # the longest template compiled: real ones are under 50 k; 1 Mi took 9 s
MAX_ERROR_CHARS = 300           # of a template's own message in an error


# ---- the environment ---------------------------------------------------------------------------

class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's compiler, but `a ~ b` joins through the environment's sized join (Jinja writes a
    call to its own str_join, which str()s a container of any size)."""

    def visit_Concat(self, node, frame) -> None:
        self.write("environment.bounded_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _BoundedFormatter(SandboxedFormatter):
    """str.format / format_map in the sandbox: each field's spec, value and the running total sized."""

    def vformat(self, format_string, args, kwargs):
        self._total = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value, conversion):
        if conversion is not None:
            text_size(value, what="a formatted field")
        return super().convert_field(value, conversion)

    def format_field(self, value, format_spec):
        check_format_spec(format_spec)
        bounded_str(value)
        text = super().format_field(value, format_spec)
        self._total += len(text)
        check_text(self._total, "a formatted string")
        return text


class _BoundedEscapeFormatter(_BoundedFormatter, SandboxedEscapeFormatter):
    pass


class _StrictSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, strict about attributes, with the size limits wired into the
    operators, method calls, str.format, output and concatenation."""
    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options):
        super().__init__(finalize=self._finalize, **options)
        self.concat = bounded_concat            # macro bodies, {% set %} / {% filter %} blocks

    @staticmethod
    def _finalize(value):
        """Each `{{ expression }}`: a container is sized before Jinja str()s it."""
        return value if isinstance(value, str) else bounded_str(value)

    @staticmethod
    def bounded_join(parts) -> str:
        return bounded_join(parts)

    def unsafe_undefined(self, obj, attribute):
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} "
                            "object is unsafe")

    def call_binop(self, context, operator, left, right):
        if operator == "+" and type(left) is str and type(right) is str:   # most of a real template's
            check_text(len(left) + len(right), "a concatenated string")
            return left + right
        limits.check_binop(operator, left, right)
        return self.binop_table[operator](left, right)

    def call(__self, __context, __obj, *args, **kwargs):     # Jinja's signature: no clash with kwargs
        if isinstance(__obj, (types.BuiltinMethodType, types.MethodType)) \
                and isinstance(getattr(__obj, "__self__", None), (str, bytes)):
            args, kwargs = limits.checked_text_method_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value):
        """Jinja's wrapper of str.format / format_map, with the sized formatter."""
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) \
                or value.__name__ not in ("format", "format_map") or not isinstance(value.__self__, str):
            return None
        text = value.__self__
        formatter = _BoundedEscapeFormatter(self, escape=text.escape) if isinstance(text, Markup) \
            else _BoundedFormatter(self)
        is_format_map = value.__name__ == "format_map"

        def wrapper(*args, **kwargs):
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                args, kwargs = (), args[0]
            return type(text)(formatter.vformat(text, args, kwargs))

        return functools.update_wrapper(wrapper, value)


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` (HF's assistant-mask marker): renders its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


# ---- globals and filters HF templates use, sized ------------------------------------------------

def _raise_exception(message) -> None:
    raise ChatTemplateError(f"chat template raised: {one_line(bounded_str(message))}")


def _strftime_now(fmt: str) -> str:
    check_text(len(fmt) * 64, "a strftime format")     # one directive gives at most a few dozen characters
    return datetime.datetime.now().strftime(fmt)


def _tojson(value, indent=None, separators=None, sort_keys=False, ensure_ascii=False):
    # HF's tojson: plain json.dumps, without jinja's HTML escaping; sized with its indentation
    # and separators first
    width = indent if isinstance(indent, int) else len(indent) if isinstance(indent, str) else 0
    seps = sum(len(s) for s in separators if isinstance(s, str)) if isinstance(separators, (list, tuple)) else 2
    text_size(value, indent=max(width, 0), per_item=seps, escape_all=bool(ensure_ascii), what="a JSON text")
    return json.dumps(value, indent=indent, separators=separators, sort_keys=sort_keys,
                      ensure_ascii=ensure_ascii)


def _lipsum(n=5, html=True, min=20, max=100):      # Jinja's parameter names
    check_text(n * max * 16 if isinstance(n, int) and isinstance(max, int) else 0, "lorem ipsum")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


def _checked_filter(name: str, check):
    """Jinja's filter `name`, with check(value, *args, **kwargs) run first; a check that had to
    read an iterable into a list to size it returns that list, handed on as the value."""
    original = FILTERS[name]
    skip = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(original)
    def checked(*args, **kwargs):
        head, (value, *rest) = args[:skip], args[skip:]
        read = check(value, *rest, **kwargs)
        return original(*head, value if read is None else read, *rest, **kwargs)
    return checked


def _sized_as_text(value, *args, **kwargs) -> None:
    """A filter that turns its value into text: a container's text is sized first."""
    bounded_str(value)


def _sized_center(value, width=80, *args, **kwargs) -> None:
    bounded_str(value)
    if isinstance(width, int):
        check_text(width, "a centred string")


def _sized_indent(value, width=4, *args, **kwargs) -> None:
    text = bounded_str(value)
    per_line = width if isinstance(width, int) else len(width) if isinstance(width, str) else 0
    check_text(len(text) + (text.count("\n") + 1) * max(per_line, 0), "an indented string")


def _sized_wordwrap(value, width=79, break_long_words=True, wrapstring=None, *args, **kwargs) -> None:
    text = bounded_str(value)
    breaks = len(text) // max(width, 1) + text.count(" ") + 1 if isinstance(width, int) else len(text)
    joint = len(wrapstring) if isinstance(wrapstring, str) else 2
    check_text(len(text) + breaks * joint, "a wrapped string")


def _sized_replace(value, old="", new="", count=None, *args, **kwargs) -> None:
    text = bounded_str(value)
    size = replaced_size(text, bounded_str(old), bounded_str(new), -1 if count is None else count)
    check_text(size, "a replaced string")


def _sized_format(value, *args, **kwargs) -> None:
    check_printf(bounded_str(value), kwargs or args)


def _sized_join(value, d="", attribute=None, *args, **kwargs) -> list:
    items = list(value)
    check_items(len(items), "a joined list")
    shown = map(make_attrgetter(_JOIN_ENV, attribute), items) if attribute is not None else items
    bounded_join(shown, bounded_str(d))
    return items


def _sized_sum(value, attribute=None, start=0, *args, **kwargs) -> list:
    items = list(value)
    if attribute is None and isinstance(start, (list, tuple)):
        check_items(sum(len(x) for x in items if isinstance(x, (list, tuple))) + len(start), "a summed list")
    return items


def _sized_batch(value, linecount=1, fill_with=None, *args, **kwargs) -> None:
    if fill_with is not None and isinstance(linecount, int):
        check_items(linecount, "a batch")


def _sized_slice(value, slices=1, fill_with=None, *args, **kwargs) -> None:
    if isinstance(slices, int):
        check_items(slices, "a list of slices")


def _sized_list(value, *args, **kwargs) -> None:
    if isinstance(value, (str, bytes)):
        check_items(len(value), "a list")


def _sized_pprint(value, *args, **kwargs) -> None:
    text_size(value, indent=1, what="a pretty-printed value")


_STRINGIFYING = ("capitalize", "e", "escape", "forceescape", "lower", "safe", "string", "striptags", "title",
                 "trim", "truncate", "upper", "urlencode", "urlize", "wordcount", "xmlattr")
_FILTER_CHECKS = {
    **{name: _sized_as_text for name in _STRINGIFYING},
    "center": _sized_center, "indent": _sized_indent, "wordwrap": _sized_wordwrap, "replace": _sized_replace,
    "format": _sized_format, "join": _sized_join, "sum": _sized_sum, "batch": _sized_batch,
    "slice": _sized_slice, "list": _sized_list, "pprint": _sized_pprint,
}
_JOIN_ENV = ImmutableSandboxedEnvironment()        # only for make_attrgetter's sandboxed getattr


def make_environment() -> ImmutableSandboxedEnvironment:
    env = _StrictSandbox(trim_blocks=True, lstrip_blocks=True,
                         extensions=[jinja2.ext.loopcontrols, _GenerationTag])
    for name, check in _FILTER_CHECKS.items():
        env.filters[name] = _checked_filter(name, check)
    env.filters["tojson"] = _tojson
    env.globals["lipsum"] = _lipsum                 # range is Jinja's sandboxed one (100,000 items at most)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


# ---- compile and render -------------------------------------------------------------------------

def compile_template(text: str) -> jinja2.Template:
    """The template compiled, or one ChatTemplateError (too long, too deep, too slow, or not Jinja)."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateLimitError(f"chat template is {len(text)} characters long (max {MAX_TEMPLATE_CHARS})")
    try:
        return within_deadline(lambda: make_environment().from_string(text), "compile")
    except ChatTemplateError:
        raise
    except TemplateError as exc:
        raise ChatTemplateError(f"chat template does not compile: {one_line(exc)}") from exc
    except (RecursionError, MemoryError) as exc:
        raise TemplateLimitError("chat template does not compile: it nests too deeply") from exc
    except Exception as exc:                        # Python's compiler on what Jinja generated
        raise ChatTemplateError(f"chat template does not compile: {type(exc).__name__}: {one_line(exc)}") from exc


def render_template(template: jinja2.Template, context: dict) -> str:
    """The rendered text, or one ChatTemplateError, whatever the template does."""
    try:
        return within_deadline(lambda: _bounded_output(template, context), "render")
    except ChatTemplateError:
        raise
    except SecurityError as exc:
        raise ChatTemplateError(f"chat template tried to escape the sandbox: {one_line(exc)}") from exc
    except MemoryError as exc:
        raise TemplateLimitError("chat template ran out of memory") from exc
    except Exception as exc:                        # the template is code: any Python error can come out
        raise ChatTemplateError(f"chat template failed to render: {type(exc).__name__}: {one_line(exc)}") from exc


def _bounded_output(template: jinja2.Template, context: dict) -> str:
    chunks, size = [], 0
    for chunk in template.generate(**context):
        chunks.append(chunk)
        size += len(chunk)
        if size > limits.MAX_TEXT:
            raise TemplateLimitError(f"chat template output exceeds {limits.MAX_TEXT} characters")
    return "".join(chunks)


def one_line(message) -> str:
    """A message (an exception's) on one line, cut to MAX_ERROR_CHARS."""
    text = " ".join(str(message).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."
