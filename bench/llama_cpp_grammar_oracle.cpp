// What llama.cpp's own GBNF parser makes of grammars, for bench/record_grammars.py (which compiles
// this against the llama-cpp-python 0.3.36 sdist's headers and the compare venv's libllama.so).
//
//     llama_cpp_grammar_oracle FILE [ROOT]
//
// parses FILE with llama_grammar_parser::parse, then builds it with llama_grammar_init_impl (no
// vocabulary; ROOT defaults to "root"), and prints one JSON object on stdout:
//     {"parsed": bool, "symbols": {name: id}, "rules": [[[type, value], ...], ...],
//      "print": "<llama_grammar_parser::print's output>", "init": bool}
// llama.cpp's own error messages go to stderr, as llama.cpp prints them.
#include "llama-grammar.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

// bytes >= 0x80 are written as \u00XX: the reader decodes the string as Latin-1 to get the bytes back
static void json_string(const std::string & s) {
    putchar('"');
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c < 0x20 || c >= 0x7f) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
}

int main(int argc, char ** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE [ROOT]\n", argv[0]);
        return 2;
    }
    std::ifstream in(argv[1], std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    const char * root = argc > 2 ? argv[2] : "root";

    llama_grammar_parser parser;
    const bool parsed = parser.parse(text.c_str());
    printf("{\"parsed\": %s, \"symbols\": {", parsed ? "true" : "false");
    if (parsed) {   // a failed parse may leave millions of generated symbols: not wanted
        bool first = true;
        for (const auto & kv : parser.symbol_ids) {
            printf(first ? "" : ", ");
            first = false;
            json_string(kv.first);
            printf(": %u", kv.second);
        }
    }
    printf("}, \"rules\": [");
    for (size_t i = 0; i < parser.rules.size(); i++) {
        printf(i ? ", [" : "[");
        for (size_t j = 0; j < parser.rules[i].size(); j++) {
            printf(j ? ", [%d, %u]" : "[%d, %u]", (int) parser.rules[i][j].type, parser.rules[i][j].value);
        }
        printf("]");
    }
    printf("], \"print\": ");
    std::string printed;
    if (parsed) {
        FILE * f = tmpfile();
        parser.print(f);
        fflush(f);
        rewind(f);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
            printed.append(buf, n);
        }
        fclose(f);
    }
    json_string(printed);
    fflush(stdout);

    bool built = false;
    if (parsed) {
        llama_grammar * grammar = llama_grammar_init_impl(nullptr, text.c_str(), root, false, nullptr, 0, nullptr, 0);
        built = grammar != nullptr;
        if (grammar) {
            llama_grammar_free_impl(grammar);
        }
    }
    printf(", \"init\": %s}\n", built ? "true" : "false");
    return 0;
}
