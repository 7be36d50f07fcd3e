"""Grammar-constrained generation (issue #16): GBNF grammars (gbnf.py), the token matcher
(matcher.py) and JSON Schema -> GBNF (json_schema.py)."""
