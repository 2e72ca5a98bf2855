// mqboard mip install: packages from a MicroPython package index (micropython-lib's layout:
// INDEX/package/py/NAME/VERSION.json with "hashes" (files at INDEX/file/HH/HASH), "urls" and
// "deps"), or from a package.json given by URL or path. The tool fetches (the board needs no
// network) and puts every file with a verified transfer. The index is untrusted: file names
// must stay under the target, sizes and the number of packages are bounded.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lazylib.h"
#include "remote.h"
#include "tool.h"

#define DEFAULT_INDEX "https://micropython.org/pi/v2"
#define FETCH_MAX (16u * 1024 * 1024) // one file or package.json at most
#define PACKAGES_MAX 64               // packages of one install, dependencies included

struct fetched {
    char *data;
    size_t len;
    bool toobig;
};

static size_t on_data(char *p, size_t size, size_t n, void *ctx) {
    struct fetched *f = ctx;
    size_t add = size * n;
    if (f->len + add > FETCH_MAX) {
        f->toobig = true;
        return 0;
    }
    f->data = realloc(f->data, f->len + add + 1);
    memcpy(f->data + f->len, p, add);
    f->len += add;
    f->data[f->len] = '\0';
    return add;
}

static bool is_url(const char *s) {
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

struct mip {
    struct tool *t;
    const char *index;
    const char *target;
    int packages;
    struct curl curl; // loaded at the first URL (a local index needs no libcurl)
    bool curl_ready;
};

// Reads a URL (http, https) or a local path. Returns EXIT_OK with out filled (malloc'd).
static int fetch(struct mip *m, const char *where, struct fetched *out) {
    struct tool *t = m->t;
    memset(out, 0, sizeof(*out));
    if (!is_url(where)) {
        FILE *f = fopen(where, "rb");
        char buf[65536];
        size_t n;
        while (f != NULL && (n = fread(buf, 1, sizeof(buf), f)) > 0 && !out->toobig) {
            on_data(buf, 1, n, out);
        }
        if (f == NULL || out->toobig) {
            tool_error(t, "mip: cannot read %s%s", where, out->toobig ? " (too big)" : "");
            if (f != NULL) {
                fclose(f);
            }
            free(out->data);
            return EXIT_LOCAL;
        }
        fclose(f);
        if (out->data == NULL) {
            out->data = strdup("");
        }
        return EXIT_OK;
    }
    if (!m->curl_ready) {
        if (!curl_load(t, &m->curl)) {
            return EXIT_LOCAL;
        }
        m->curl.global_init(CURL_GLOBAL_DEFAULT);
        m->curl_ready = true;
    }
    const struct curl *cu = &m->curl;
    CURL *c = cu->easy_init();
    cu->easy_setopt(c, CURLOPT_URL, where);
    cu->easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    cu->easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    cu->easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    cu->easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    cu->easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    cu->easy_setopt(c, CURLOPT_WRITEDATA, out);
    CURLcode rc = cu->easy_perform(c);
    long status = 0;
    cu->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    cu->easy_cleanup(c);
    if (rc != CURLE_OK || status != 200) {
        tool_error(t, "mip: cannot fetch %s: %s", where,
                   out->toobig      ? "too big"
                   : rc != CURLE_OK ? cu->easy_strerror(rc)
                                    : "not found");
        free(out->data);
        return EXIT_LOCAL;
    }
    if (out->data == NULL) {
        out->data = strdup("");
    }
    return EXIT_OK;
}

// A package's file name (untrusted): relative, without an empty, "." or ".." component, and
// one a topic can carry.
static bool safe_name(const char *p) {
    return p[0] != '/' && remote_sub(p, "") != NULL && topic_safe(p);
}

// Puts fetched bytes as TARGET/name (through a temporary local file: put streams a file).
static int put_bytes(struct mip *m, const char *name, const struct fetched *f,
                     const char *short_hash) {
    if (short_hash != NULL) { // the index names each file by its SHA-256: check it
        uint8_t md[32];
        char hex[65];
        EVP_Digest(f->data, f->len, md, NULL, EVP_sha256(), NULL);
        for (int i = 0; i < 32; i++) {
            sprintf(hex + 2 * i, "%02x", md[i]);
        }
        if (strncmp(hex, short_hash, strlen(short_hash)) != 0) {
            tool_error(m->t, "mip: %s: the file does not match its hash in the index", name);
            return EXIT_BOARD;
        }
    }
    char tmp[] = "/tmp/mqboard-mip-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0 || write(fd, f->data, f->len) != (ssize_t)f->len) {
        tool_error(m->t, "mip: cannot write a temporary file: %s", strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        return EXIT_LOCAL;
    }
    close(fd);
    char *remote = NULL;
    int code = EXIT_LOCAL;
    if (asprintf(&remote, "%s/%s", m->target, name) >= 0) {
        if (!m->t->opts.quiet) {
            fprintf(m->t->out, "  %s\n", remote);
        }
        code = put_file(m->t, tmp, remote);
    }
    free(remote);
    unlink(tmp);
    return code;
}

static int install(struct mip *m, const char *pkg, const char *version);

// Installs what a package.json lists: "hashes" from the index, "urls", then "deps".
static int install_json(struct mip *m, const char *where, cJSON *j) {
    int code = EXIT_OK;
    const cJSON *it;
    const cJSON *hashes = cJSON_GetObjectItemCaseSensitive(j, "hashes");
    cJSON_ArrayForEach(it, hashes) {
        const cJSON *name = cJSON_GetArrayItem(it, 0), *h = cJSON_GetArrayItem(it, 1);
        if (code != EXIT_OK || !cJSON_IsString(name) || !cJSON_IsString(h)) {
            continue;
        }
        if (!safe_name(name->valuestring) || strlen(h->valuestring) < 2 ||
            strspn(h->valuestring, "0123456789abcdef") != strlen(h->valuestring)) {
            tool_error(m->t, "mip: %s: refusing the file name or hash '%s'", where,
                       name->valuestring);
            return EXIT_BOARD;
        }
        char *url = NULL;
        struct fetched f;
        if (asprintf(&url, "%s/file/%.2s/%s", m->index, h->valuestring, h->valuestring) < 0) {
            return EXIT_LOCAL;
        }
        code = fetch(m, url, &f);
        free(url);
        if (code == EXIT_OK) {
            code = put_bytes(m, name->valuestring, &f, h->valuestring);
            free(f.data);
        }
    }
    const cJSON *urls = cJSON_GetObjectItemCaseSensitive(j, "urls");
    cJSON_ArrayForEach(it, urls) {
        const cJSON *name = cJSON_GetArrayItem(it, 0), *u = cJSON_GetArrayItem(it, 1);
        if (code != EXIT_OK || !cJSON_IsString(name) || !cJSON_IsString(u)) {
            continue;
        }
        if (!safe_name(name->valuestring)) {
            tool_error(m->t, "mip: %s: refusing the file name '%s'", where, name->valuestring);
            return EXIT_BOARD;
        }
        char *url = NULL;
        const char *slash = strrchr(where, '/');
        if (is_url(u->valuestring) || slash == NULL) {
            url = strdup(u->valuestring);
        } else if (asprintf(&url, "%.*s/%s", (int)(slash - where), where, u->valuestring) < 0) {
            url = NULL;
        }
        struct fetched f;
        code = url != NULL ? fetch(m, url, &f) : EXIT_LOCAL;
        free(url);
        if (code == EXIT_OK) {
            code = put_bytes(m, name->valuestring, &f, NULL);
            free(f.data);
        }
    }
    const cJSON *deps = cJSON_GetObjectItemCaseSensitive(j, "deps");
    cJSON_ArrayForEach(it, deps) {
        const cJSON *name = cJSON_GetArrayItem(it, 0), *v = cJSON_GetArrayItem(it, 1);
        if (code == EXIT_OK && cJSON_IsString(name)) {
            code = install(m, name->valuestring, cJSON_IsString(v) ? v->valuestring : NULL);
        }
    }
    return code;
}

static int install(struct mip *m, const char *pkg, const char *version) {
    if (++m->packages > PACKAGES_MAX) {
        tool_error(m->t, "mip: more than %d packages (a dependency loop?)", PACKAGES_MAX);
        return EXIT_BOARD;
    }
    char *where = NULL;
    size_t n = strlen(pkg);
    if (is_url(pkg) || strchr(pkg, '/') != NULL) {
        // A package.json, or a directory (URL) that holds one.
        bool json = n > 5 && strcmp(pkg + n - 5, ".json") == 0;
        if (asprintf(&where, "%s%s%s", pkg, json || pkg[n - 1] == '/' ? "" : "/",
                     json ? "" : "package.json") < 0) {
            return EXIT_LOCAL;
        }
    } else if (strspn(pkg, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != n ||
               asprintf(&where, "%s/package/py/%s/%s.json", m->index, pkg,
                        version != NULL && version[0] ? version : "latest") < 0) {
        tool_error(m->t, "mip: '%s' is not a package name", pkg);
        return EXIT_USAGE;
    }
    if (!m->t->opts.quiet) {
        fprintf(m->t->out, "Installing %s to %s\n", pkg, m->target);
    }
    struct fetched f;
    int code = fetch(m, where, &f);
    if (code == EXIT_OK) {
        cJSON *j = cJSON_ParseWithLength(f.data, f.len);
        if (cJSON_IsObject(j)) {
            code = install_json(m, where, j);
        } else {
            tool_error(m->t, "mip: %s is not a package description", where);
            code = EXIT_BOARD;
        }
        cJSON_Delete(j);
        free(f.data);
    }
    free(where);
    return code;
}

int cmd_mip(struct tool *t, int argc, char **argv) {
    struct mip m = {.t = t, .index = DEFAULT_INDEX, .target = "/lib"};
    int i = 1;
    if (i < argc && strcmp(argv[i], "install") == 0) {
        i++;
    } else {
        i = argc; // only install is known
    }
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i += 2) {
        if (i + 1 >= argc) {
            i = argc;
            break;
        }
        if (strcmp(argv[i], "--index") == 0) {
            m.index = argv[i + 1];
        } else if (strcmp(argv[i], "--target") == 0) {
            m.target = argv[i + 1][0] == ':' ? argv[i + 1] + 1 : argv[i + 1];
        } else {
            i = argc;
            break;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "usage: mqboard mip install [--index URL|DIR] [--target DIR] "
                        "PACKAGE[@VERSION]...\n");
        return EXIT_USAGE;
    }
    size_t il = strlen(m.index);
    char *index = strndup(m.index, il > 1 && m.index[il - 1] == '/' ? il - 1 : il);
    m.index = index;
    int code = EXIT_OK;
    for (; code == EXIT_OK && i < argc; i++) {
        char *pkg = strdup(argv[i]), *at = is_url(pkg) ? NULL : strchr(pkg, '@');
        if (at != NULL) {
            *at = '\0';
        }
        code = install(&m, pkg, at != NULL ? at + 1 : NULL);
        free(pkg);
    }
    if (m.curl_ready) {
        m.curl.global_cleanup();
        curl_unload(&m.curl);
    }
    free(index);
    return code;
}
