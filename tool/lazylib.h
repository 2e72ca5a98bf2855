// Libraries that only some commands need, loaded when those commands run (dlopen): libcurl
// for mip, libedit for repl. Linked, they would cost every command their start-up (some 25
// more shared libraries and their initialisers). A missing library is a clear error for the
// command that needs it, and nothing for the others.
#ifndef MQBOARD_LAZYLIB_H
#define MQBOARD_LAZYLIB_H

#include <stdbool.h>
#include <stdio.h>

#define CURL_DISABLE_TYPECHECK // plain prototypes: the calls go through pointers
#include <curl/curl.h>
#include <editline/readline.h>

struct tool;

// libedit's readline interface: the functions, and the addresses of its settings.
struct editline {
    void *handle;
    __typeof__(readline) *readline;
    __typeof__(using_history) *using_history;
    __typeof__(add_history) *add_history;
    __typeof__(read_history) *read_history;
    __typeof__(write_history) *write_history;
    __typeof__(rl_initialize) *initialize;
    int *catch_signals;
    char **word_break_characters;
    rl_completion_func_t **attempted_completion_function;
    int *attempted_completion_over;
    int *completion_append_character;
    int (**getc_function)(FILE *);
};

// libcurl's easy interface.
struct curl {
    void *handle;
    __typeof__(curl_global_init) *global_init;
    __typeof__(curl_global_cleanup) *global_cleanup;
    __typeof__(curl_easy_init) *easy_init;
    __typeof__(curl_easy_setopt) *easy_setopt;
    __typeof__(curl_easy_perform) *easy_perform;
    __typeof__(curl_easy_getinfo) *easy_getinfo;
    __typeof__(curl_easy_cleanup) *easy_cleanup;
    __typeof__(curl_easy_strerror) *easy_strerror;
};

// Each loads its library and every symbol, or says on t's error stream which is missing (and
// how to install it) and returns false. libedit stays loaded until the process ends (its
// history and terminal state live in it); curl_unload is safe after a failed load.
bool editline_load(struct tool *t, struct editline *e);
bool curl_load(struct tool *t, struct curl *c);
void curl_unload(struct curl *c);

#endif
