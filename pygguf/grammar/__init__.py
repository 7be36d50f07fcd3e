"""Grammar-constrained generation: GBNF parsed exactly as llama.cpp parses it (gbnf.py: `parse(text)`
gives a `ParsedGrammar`, llama.cpp's rules and symbol ids; `to_text` prints it as llama.cpp's
print_grammar does; bad grammars raise `GrammarError`), the matcher of a grammar over a vocabulary
(matcher.py, in C), JSON Schema -> GBNF (json_schema.py), and what a request asks for as one GBNF
text (constraint.py)."""
from pygguf.errors import GrammarError
from pygguf.grammar.gbnf import (
                                 ALT,
                                 CHAR,
                                 CHAR_ALT,
                                 CHAR_ANY,
                                 CHAR_NOT,
                                 CHAR_RNG_UPPER,
                                 ELEMENT_NAMES,
                                 END,
                                 MAX_REPETITION_THRESHOLD,
                                 RULE_REF,
                                 TOKEN,
                                 TOKEN_NOT,
                                 ParsedGrammar,
                                 parse,
                                 to_text,
)

__all__ = ["ALT", "CHAR", "CHAR_ALT", "CHAR_ANY", "CHAR_NOT", "CHAR_RNG_UPPER", "ELEMENT_NAMES", "END",
           "MAX_REPETITION_THRESHOLD", "RULE_REF", "TOKEN", "TOKEN_NOT", "GrammarError", "ParsedGrammar", "parse",
           "to_text"]
