// Loads libedit (repl) and libcurl (mip) when the command that needs them runs: see lazylib.h.
#include "lazylib.h"

#include <dlfcn.h>
#include <string.h>

#include "tool.h"

struct symbol {
    const char *name;
    void **slot;
};

// Opens the first of the sonames that loads, then every symbol; false (said) if any fails.
static bool load(struct tool *t, void **handle, const char *const *sonames, const char *package,
                 const struct symbol *syms, size_t n) {
    *handle = NULL;
    for (size_t i = 0; *handle == NULL && sonames[i] != NULL; i++) {
        *handle = dlopen(sonames[i], RTLD_NOW | RTLD_LOCAL);
    }
    if (*handle == NULL) {
        tool_error(t, "this command needs %s, which is not installed (Debian: apt-get install %s)",
                   sonames[0], package);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((*syms[i].slot = dlsym(*handle, syms[i].name)) == NULL) {
            tool_error(t, "%s has no %s: install %s", sonames[0], syms[i].name, package);
            dlclose(*handle);
            *handle = NULL;
            return false;
        }
    }
    return true;
}

bool editline_load(struct tool *t, struct editline *e) {
    static const char *const sonames[] = {"libedit.so.2", "libedit.so", NULL};
    memset(e, 0, sizeof(*e));
    const struct symbol syms[] = {
        {"readline", (void **)&e->readline},
        {"using_history", (void **)&e->using_history},
        {"add_history", (void **)&e->add_history},
        {"read_history", (void **)&e->read_history},
        {"write_history", (void **)&e->write_history},
        {"rl_initialize", (void **)&e->initialize},
        {"rl_catch_signals", (void **)&e->catch_signals},
        {"rl_completer_word_break_characters", (void **)&e->word_break_characters},
        {"rl_attempted_completion_function", (void **)&e->attempted_completion_function},
        {"rl_attempted_completion_over", (void **)&e->attempted_completion_over},
        {"rl_completion_append_character", (void **)&e->completion_append_character},
        {"rl_getc_function", (void **)&e->getc_function},
    };
    return load(t, &e->handle, sonames, "libedit2", syms, sizeof(syms) / sizeof(syms[0]));
}

bool curl_load(struct tool *t, struct curl *c) {
    static const char *const sonames[] = {"libcurl.so.4", "libcurl.so", NULL};
    memset(c, 0, sizeof(*c));
    const struct symbol syms[] = {
        {"curl_global_init", (void **)&c->global_init},
        {"curl_global_cleanup", (void **)&c->global_cleanup},
        {"curl_easy_init", (void **)&c->easy_init},
        {"curl_easy_setopt", (void **)&c->easy_setopt},
        {"curl_easy_perform", (void **)&c->easy_perform},
        {"curl_easy_getinfo", (void **)&c->easy_getinfo},
        {"curl_easy_cleanup", (void **)&c->easy_cleanup},
        {"curl_easy_strerror", (void **)&c->easy_strerror},
    };
    return load(t, &c->handle, sonames, "libcurl4", syms, sizeof(syms) / sizeof(syms[0]));
}

void curl_unload(struct curl *c) {
    if (c->handle != NULL) {
        dlclose(c->handle);
        c->handle = NULL;
    }
}
