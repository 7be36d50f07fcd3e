"""Chat template limits that bind inside the sandbox: every operation that could allocate without
bound is refused before it allocates, a silent loop is stopped by the deadline wherever it is,
deep nesting is a clean error at compile time, and every failure is one ChatTemplateError on one
line (in the API, the CLI and pygguf-batch). Legitimate uses of the same operations still work."""
from __future__ import annotations

import threading

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pygguf.chat import ChatFormatter, ChatTemplateError, TemplateLimitError, limits

U1 = {"role": "user", "content": "Hello"}


def jinja(text: str) -> ChatFormatter:
    return ChatFormatter.from_metadata({"tokenizer.chat_template": text})


@pytest.fixture
def short_deadline(monkeypatch):
    monkeypatch.setattr(limits, "MAX_SECONDS", 0.3)


# ---- refused before they allocate (each allocated gigabytes or hung before) --------------------

ALLOCATING = {
    "str repeat": "{{ 'a' * 10**10 }}",
    "repeat on the left": "{{ 10**10 * 'a' }}",
    "list repeat": "{{ ([1] * 10**9) | length }}",
    "printf width": "{{ '%1000000000d' % 1 }}",
    "printf precision": "{{ '%.1000000000f' % 1.5 }}",
    "printf star width": "{{ '%*d' % (1000000000, 1) }}",
    "printf many fields": "{% set s = 'x' * 10**7 %}{{ '%s%s%s%s' % (s, s, s, s) }}",
    "ljust": "{{ 'x'.ljust(10**10) }}",
    "rjust": "{{ 'x'.rjust(10**10) }}",
    "center method": "{{ 'x'.center(10**10) }}",
    "zfill": "{{ '1'.zfill(10**10) }}",
    "expandtabs": "{{ ('\t' * 1000).expandtabs(10**8) }}",
    "replace method": "{{ ('a' * 1000).replace('a', 'b' * 10**6) }}",
    "replace empty": "{{ ('a' * 10**4).replace('', 'x' * 10**4) }}",
    "translate": "{{ ('a' * 10**4).translate({97: 'x' * 10**4}) }}",
    "join method": "{% set s = 'x' * 10**7 %}{{ ''.join([s, s, s]) }}",
    "format width": "{{ '{:>1000000000}'.format(1) }}",
    "format nested width": "{{ '{:>{}}'.format(1, 10**9) }}",
    "format precision": "{{ '{:.1000000000f}'.format(1.5) }}",
    "format repeated field": "{% set s = 'x' * 10**7 %}{{ '{0}{0}{0}'.format(s) }}",
    "power": "{{ 10**10000000 }}",
    "big int product": "{% set a = 2**60000 %}{{ (a * a) % 7 }}",
    "concat doubling": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
                       "{% endfor %}",
    "tilde doubling": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
                      "{% endfor %}",
    "list doubling": "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}"
                     "{% endfor %}",
    "shared list printed": "{% set a = [1] * 1000 %}{% set b = [a] * 1000 %}{{ [b] * 1000 }}",
    "shared list via tilde": "{% set a = [1] * 1000 %}{% set b = [a] * 1000 %}{{ 'x' ~ [b] * 1000 }}",
    "shared list in namespace": "{% set a = [1] * 1000 %}{% set ns = namespace(b=[a] * 1000) %}"
                                "{{ ns.c if false else ([ns] * 1000) | string }}",
    "nested literal doubling": "{% set ns = namespace(a=[1]) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}"
                               "{% endfor %}{{ ns.a }}",
    "shared list through a filter": "{% set a = [1] * 1000 %}{% set b = [a] * 1000 %}{{ ([b] * 1000) | upper }}",
    "shared list tojson": "{% set a = [1] * 1000 %}{% set b = [a] * 1000 %}{{ ([b] * 1000) | tojson }}",
    "tojson indent": "{{ [[[[1]]]] | tojson(indent=10**8) }}",
    "shared list pprint": "{% set a = [1] * 1000 %}{% set b = [a] * 1000 %}{{ ([b] * 1000) | pprint }}",
    "shared list printf": "{% set a = [1] * 1000 %}{% set b = [a] * 1000 %}{{ '%s' % ([b] * 1000,) }}",
    "shared list format": "{% set a = [1] * 1000 %}{% set b = [a] * 1000 %}{{ '{!r}'.format([b] * 1000) }}",
    "center filter": "{{ 'x' | center(10**10) }}",
    "indent filter": "{{ ('a\n' * 10**6) | indent(10**4) }}",
    "replace filter": "{{ ('a' * 1000) | replace('a', 'b' * 10**6) }}",
    "format filter": "{{ '%1000000000d' | format(1) }}",
    "join filter": "{% set s = 'x' * 10**7 %}{{ [s, s, s] | join }}",
    "join separator": "{{ ([1] * 1000) | join('x' * 10**5) }}",
    "wordwrap": "{{ ('a ' * 10**5) | wordwrap(1, wrapstring='x' * 1000) }}",
    "sum of lists": "{% set a = [1] * 10**5 %}{{ ([a] * 10**5) | sum(start=[]) | length }}",
    "batch padding": "{{ [1] | batch(10**9, 'x') | list | length }}",
    "slices": "{{ [1] | slice(10**9) | list | length }}",
    "list of a long string": "{{ ('x' * 10**7) | list | length }}",
    "lipsum": "{{ lipsum(n=10**6) }}",
    "macro body": "{% macro m() %}{% for i in range(200) %}{{ 'x' * 10**5 }}{% endfor %}{% endmacro %}"
                  "{{ m() | length }}",
    "set block": "{% set x %}{% for i in range(200) %}{{ 'x' * 10**5 }}{% endfor %}{% endset %}{{ x | length }}",
    "filter block": "{% filter upper %}{% for i in range(200) %}{{ 'x' * 10**5 }}{% endfor %}{% endfilter %}",
    "strftime": "{{ strftime_now('%c' * 10**6) }}",
    "raise a big message": "{% set a = [1] * 1000 %}{{ raise_exception([[a] * 1000] * 1000) }}",
}


@pytest.mark.parametrize("name", sorted(ALLOCATING))
def test_allocating_operations_are_refused_before_they_allocate(name, monkeypatch):
    monkeypatch.setattr(limits, "MAX_SECONDS", 5.0)     # a stop, should one hang; none reaches it
    with pytest.raises(ChatTemplateError) as info:
        jinja(ALLOCATING[name]).render([U1])
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    if name != "raise a big message":
        assert isinstance(info.value, TemplateLimitError), message
        assert "took more than" not in message, "refused by the deadline, not before allocating"


SLOW = {
    "silent nested range loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "nested loops over a long string": "{% set s = 'x' * 10**6 %}{% for a in s %}{% for b in s %}{% endfor %}"
                                       "{% endfor %}",
    "nested loops over a long list": "{% set l = [0] * 10**6 %}{% for a in l %}{% for b in l %}{% endfor %}"
                                     "{% endfor %}",
    "recursive loop": "{% for x in [[1, 2]] * 3000 recursive %}{% for y in range(100000) %}{% endfor %}"
                      "{% endfor %}",
    "macro fan-out": "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "quadratic list growth": "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% for j in range(100000) %}"
                             "{% set ns.l = ns.l + [j] if ns.l | length < 1000 else [] %}{% endfor %}{% endfor %}",
}


@pytest.mark.parametrize("name", sorted(SLOW))
def test_silent_loops_are_stopped_by_the_deadline(name, short_deadline):
    with pytest.raises(TemplateLimitError, match=r"took more than 0\.3 s to render"):
        jinja(SLOW[name]).render([U1])


def test_the_deadline_stops_a_render_in_another_thread_and_never_fires_late(short_deadline):
    errors = []

    def render():
        try:
            jinja(SLOW["silent nested range loops"]).render([U1])
        except ChatTemplateError as exc:
            errors.append(exc)
    worker = threading.Thread(target=render)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive() and len(errors) == 1
    # renders that end in time leave nothing behind that could fire in the caller later
    fmt = jinja("{% for i in range(20000) %}{% endfor %}ok")
    for _ in range(50):
        assert fmt.render([U1]) == "ok"
    limits.MAX_SECONDS = 0.0            # a deadline already past when the render ends
    for _ in range(20):
        try:
            fmt.render([U1])
        except TemplateLimitError:
            pass
    total = sum(range(200000))          # bytecode after the renders: no stray exception lands here
    assert total > 0


def test_ranges_stay_bounded():
    with pytest.raises(ChatTemplateError, match="Range too big"):
        jinja("{% for i in range(10**6) %}{% endfor %}").render([U1])


def test_a_long_output_is_refused(monkeypatch):
    monkeypatch.setattr(limits, "MAX_TEXT", 10_000)
    with pytest.raises(TemplateLimitError, match="output exceeds"):
        jinja("{% for i in range(100000) %}xxxxxxxx{% endfor %}").render([U1])


# ---- compile time ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
    "{{ " + "[" * 5000 + "]" * 5000 + " }}",
    "{% if true %}" * 3000 + "x" + "{% endif %}" * 3000,
    "{{ " + "-" * 20000 + "1 }}",
    "{{ 1" + " + 1" * 20000 + " }}",
])
def test_deep_nesting_is_a_clean_compile_error(text):
    with pytest.raises(ChatTemplateError, match="does not compile"):
        jinja(text)


def test_a_huge_template_is_refused():
    with pytest.raises(TemplateLimitError, match="characters long"):
        jinja("x" * (2 << 20))


def test_a_deep_template_in_a_gguf_falls_back_to_its_detected_builtin():
    text = "<|im_start|>{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"
    fmt = ChatFormatter.from_metadata({"tokenizer.chat_template": text})
    assert fmt.builtin == "chatml"


# ---- every failure one clean line -------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "{{ 1 / 0 }}",
    "{{ 1 // 0 }}",
    "{{ 1.5 ** 100000 }}",
    "{{ 10 ** 5000 }}",                                   # str() of more than 4300 digits
    "{{ [1] | first + 'x' }}",
    "{{ raise_exception('one\\ntwo\\nthree') }}",
    "{{ 'abc'.index('z') }}",
    "{{ messages[5].content }}",
    "{{ 'x' | wordwrap(0) }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{% include 'other' %}",
    "{{ ('x' * 10**6) | float + 'x' }}",
])
def test_every_template_failure_is_one_chat_template_error_line(text):
    with pytest.raises(ChatTemplateError) as info:
        jinja(text).render([U1])
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


# ---- legitimate uses keep working ----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("{{ 'ab' * 3 }}|{{ 3 * 'ab' }}|{{ [1] * 2 }}|{{ 2 ** 10 }}|{{ 7 % 3 }}|{{ 'a' + 'b' }}", "ababab|ababab|[1, 1]|1024|1|ab"),
    ("{{ '%s=%d %5.2f' % ('x', 3, 1.5) }}|{{ '%(a)s' % {'a': 1} }}", "x=3  1.50|1"),
    ("{{ 'x'.ljust(3, '.') }}|{{ 'x'.center(3) }}|{{ '7'.zfill(3) }}|{{ 'a-b'.replace('-', '+') }}", "x..| x |007|a+b"),
    ("{{ '{} {:>4} {:.2f} {name}'.format('a', 'b', 2.5, name='n') }}", "a    b 2.50 n"),
    ("{{ '{a}'.format_map({'a': 1}) }}|{{ ', '.join(['a', 'b']) }}|{{ 'a\tb'.expandtabs(2) }}", "1|a, b|a b"),
    ("{{ ['a', 'b'] | join(', ') }}|{{ messages | map(attribute='role') | join }}|{{ [1, 2] | sum }}", "a, b|user|3"),
    ("{{ 'x' | center(5) }}|{{ 'a\nb' | indent(2) }}|{{ 'a b' | replace(' ', '_') }}|{{ '%03d' | format(7) }}",
     "  x  |a\n  b|a_b|007"),
    ("{{ {'k': [1, 'é']} | tojson }}|{{ {'k': 1} | tojson(indent=2) }}", '{"k": [1, "é"]}|{\n  "k": 1\n}'),
    ("{{ [1, 2, 3] | batch(2, 0) | list }}|{{ [1, 2, 3] | slice(2) | list }}|{{ 'ab' | list }}",
     "[[1, 2], [3, 0]]|[[1, 2], [3]]|['a', 'b']"),
    ("{{ messages }}|{{ 'n=' ~ 3 ~ [1] }}|{{ messages[0] | string | length }}",
     "[{'role': 'user', 'content': 'Hello'}]|n=3[1]|36"),
    ("{% set ns = namespace(x=1) %}{{ ns.x }}|{{ lipsum(1, false, 5, 6) | wordcount }}", "1|5"),
    ("{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m('a') }}|{% filter upper %}b{% endfilter %}", "<a>|B"),
])
def test_legitimate_uses_of_the_bounded_operations_still_work(text, expected):
    assert jinja(text).render([U1]) == expected


# ---- front ends: one line in the CLI, one error record in pygguf-batch ---------------------------

HOSTILE = "{{ 'a' * 10**10 }}"


def test_cli_conversation_reports_a_hostile_template_on_one_line():
    from interactive_fakes import FakeModel, FakeSampler, FakeTokenizer, ScriptedConsole

    from pygguf_cli.interactive import InteractiveParams, run_interactive
    tok = FakeTokenizer()
    model = FakeModel(tok, n_ctx=4096, metadata={"tokenizer.chat_template": HOSTILE})
    console = ScriptedConsole(["Hello", None], is_tty=True)
    rc = run_interactive(model, FakeSampler(tok, []), InteractiveParams(conversation=True), console)
    assert rc == 1
    errors = [line for line in console.stderr.splitlines() if "chat template" in line]
    assert errors == ["error: chat template exceeds its limits: a repeated string would be 10000000000 "
                      "(max 16777216)"]
    assert "Traceback" not in console.stderr


def test_batch_gives_the_record_its_error_and_goes_on(tmp_path):
    import json

    from batch_fakes import FakeContextModel

    from pygguf.api import Llama
    from pygguf_cli.batch import main as batch_cli

    def load(options):
        model = FakeContextModel({"Greet:": "Hello STOP"}, n_ctx=128, n_seq=options.parallel)
        model.metadata = {**model.metadata, "tokenizer.chat_template": HOSTILE}
        return Llama(options.path, model=model)
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "chat", "messages": [U1]}) + "\n" + json.dumps({"id": "p", "prompt": "Greet:"}) + "\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(batch_cli, ["-m", "fake.gguf", "-i", str(inp), "-o", str(out), "-n", "4"],
                                obj={"load_llm": load})
    assert "Traceback" not in result.output
    got = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert "a repeated string would be 10000000000" in got["chat"]["error"]
    assert "text" in got["p"]


# ---- properties -----------------------------------------------------------------------------------

REAL = [
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}<<SYS>>{{ m['content'] | trim }}<</SYS>>"
    "{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% else %}{{ m['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}",
    "{% for m in messages %}{{ m | tojson }}{{ '%s:%s' % (m.role, m.content | length) }}{% endfor %}",
]
messages_strategy = st.lists(st.fixed_dictionaries({"role": st.text(max_size=20), "content": st.text(max_size=200)}),
                             max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(template=st.sampled_from(REAL), messages=messages_strategy, add=st.booleans())
def test_any_messages_render_to_text_or_a_clean_error(template, messages, add):
    try:
        out = jinja(template).render(messages, add_generation_prompt=add)
    except ChatTemplateError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(out, str)


# pieces of Jinja, hostile and not, for arbitrary template texts
PIECES = ["{{", "}}", "{%", "%}", "{#", "#}", " for x in ", " endfor ", " if ", " endif ", " set ", " macro ",
          " endmacro ", "range(", "10**", "9", "99999", "*", "+", "%", "~", "(", ")", "[", "]", "'a'", "'%9d'",
          "messages", ".ljust(", ".format(", "'{:>99}'", "|join", "|tojson", "|center(", "|list", "lipsum(",
          "namespace(", "ns.s", "=", ",", "loop.index", " recursive ", "x", "\n", " "]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=40), chaos=st.text(max_size=30))
def test_any_template_text_gives_text_or_a_clean_error_within_the_limits(pieces, chaos, monkeypatch):
    monkeypatch.setattr(limits, "MAX_SECONDS", 0.5)
    monkeypatch.setattr(limits, "MAX_TEXT", 100_000)
    try:
        out = jinja("".join(pieces) + chaos).render([U1, {"role": "assistant", "content": "Hi"}])
    except ChatTemplateError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(out, str) and len(out) <= 100_000
