// mqboard mip install: packages from a MicroPython package index (micropython-lib's layout:
// INDEX/package/py/NAME/VERSION.json with "hashes" (files at INDEX/file/HH/HASH), "urls" and
// "deps"), or from a package.json given by URL or path. The tool fetches (the board needs no
// network) and puts every file with a verified transfer. The index is untrusted: file names
// must stay under the target, sizes and the number of packages are bounded.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
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

// What a package may make this machine fetch (packages are untrusted, and unlike the real
// mip, which runs on the board, this one runs on the admin's machine): a package fetched from
// a URL never names a local path, and never makes mqboard connect to a loopback, private or
// link-local address, except the very address and port of the URL the user typed (a local
// index serving its own files).
struct mip {
    struct tool *t;
    const char *index;
    const char *target;
    int packages;
    struct curl curl; // loaded at the first URL (a local index needs no libcurl)
    bool curl_ready;
    bool user_url;      // the user typed a URL (--index or a package): its address is trusted
    bool for_remote;    // the fetch under way is on behalf of a package fetched from a URL
    bool origin_set;    // origin_ip/port: where the first connection of the user's URL went
    char origin_ip[64]; // (only kept when that address is local: otherwise nothing is)
    int origin_port;
    char refused_ip[64]; // the address a fetch was refused, for the message
};

// Loopback, private (RFC 1918, unique local), link-local, unspecified or CGNAT addresses:
// what only this machine or its network can reach.
static bool local_address(const char *ip) {
    unsigned char a[16];
    if (inet_pton(AF_INET, ip, a) == 1) {
        return a[0] == 127 || a[0] == 10 || a[0] == 0 || (a[0] == 172 && (a[1] & 0xf0) == 16) ||
               (a[0] == 192 && a[1] == 168) || (a[0] == 169 && a[1] == 254) ||
               (a[0] == 100 && (a[1] & 0xc0) == 64);
    }
    if (inet_pton(AF_INET6, ip, a) == 1) {
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        bool zero = true;
        for (int i = 0; i < 15; i++) {
            zero &= a[i] == 0;
        }
        if (memcmp(a, v4mapped, 12) == 0) {
            char v4[INET_ADDRSTRLEN];
            return inet_ntop(AF_INET, a + 12, v4, sizeof(v4)) == NULL || local_address(v4);
        }
        return zero || (a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
    }
    return true; // not an address we can read: refuse
}

// libcurl asks before each request, once connected (redirects included).
static int on_prereq(void *ctx, char *ip, char *local_ip, int port, int local_port) {
    (void)local_ip;
    (void)local_port;
    struct mip *m = ctx;
    if (!m->origin_set && m->user_url && !m->for_remote) {
        m->origin_set = true;
        if (local_address(ip)) {
            snprintf(m->origin_ip, sizeof(m->origin_ip), "%s", ip);
            m->origin_port = port;
        }
        return CURL_PREREQFUNC_OK;
    }
    if (!m->for_remote || !local_address(ip) ||
        (strcmp(ip, m->origin_ip) == 0 && port == m->origin_port)) {
        return CURL_PREREQFUNC_OK;
    }
    snprintf(m->refused_ip, sizeof(m->refused_ip), "%s port %d", ip, port);
    return CURL_PREREQFUNC_ABORT;
}

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
    cu->easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    cu->easy_setopt(c, CURLOPT_PREREQFUNCTION, on_prereq);
    cu->easy_setopt(c, CURLOPT_PREREQDATA, m);
    m->refused_ip[0] = '\0';
    cu->easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    cu->easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    cu->easy_setopt(c, CURLOPT_WRITEDATA, out);
    CURLcode rc = cu->easy_perform(c);
    long status = 0;
    cu->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    cu->easy_cleanup(c);
    if (m->refused_ip[0] != '\0') {
        tool_error(t,
                   "mip: refusing to fetch %s for a package from a URL: it leads to %s, an "
                   "address of this machine or its network",
                   where, m->refused_ip);
        free(out->data);
        return EXIT_BOARD;
    }
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
            char *e = tool_escape(remote);
            fprintf(m->t->out, "  %s\n", e);
            free(e);
        }
        code = put_file(m->t, tmp, remote);
    }
    free(remote);
    unlink(tmp);
    return code;
}

static int install(struct mip *m, const char *pkg, const char *version, bool from_remote);

// mpremote's and mip's short forms: github:ORG/REPO[/PATH] and gitlab:ORG/REPO[/PATH] are the
// raw files of that repository at BRANCH (HEAD when none). malloc'd, or NULL for any other
// name.
static char *short_form_url(const char *name, const char *branch) {
    bool gh = strncmp(name, "github:", 7) == 0, gl = strncmp(name, "gitlab:", 7) == 0;
    if (!gh && !gl) {
        return NULL; // (before looking past the 7 characters: the name may be shorter)
    }
    const char *repo = name + 7, *slash = strchr(repo, '/');
    if (slash == NULL || slash == repo || slash[1] == '\0' || slash[1] == '/') {
        return NULL;
    }
    const char *rest = strchr(slash + 1, '/'); // the path in the repository, or none
    int repo_len = rest != NULL ? (int)(rest - repo) : (int)strlen(repo);
    char *url = NULL;
    if (asprintf(&url,
                 gh ? "https://raw.githubusercontent.com/%.*s/%s/%s"
                    : "https://gitlab.com/%.*s/-/raw/%s/%s",
                 repo_len, repo, branch != NULL && branch[0] ? branch : "HEAD",
                 rest != NULL ? rest + 1 : "") < 0) {
        return NULL;
    }
    return url;
}

// Where a "urls" entry of the package description at `where` is: a URL as it is; a relative
// entry beside the description (a URL under a URL; under a local directory it must stay
// beneath that directory, symlinks followed: "../../.ssh/id_rsa" is refused). malloc'd, or
// NULL (said).
// Says that a package's entry was refused, its text escaped (a package is untrusted).
static void refuse_name(struct mip *m, const char *where, const char *what, const char *name) {
    char *w = tool_escape(where), *n = tool_escape(name);
    tool_error(m->t, "mip: %s: refusing the %s '%s'", w, what, n);
    free(w);
    free(n);
}

static char *entry_location(struct mip *m, const char *where, const char *entry) {
    char *loc = short_form_url(entry, NULL);
    const char *slash = strrchr(where, '/');
    if (loc != NULL) {
        return loc;
    }
    if (is_url(entry)) {
        return strdup(entry);
    }
    if (asprintf(&loc, "%.*s%s%s", slash != NULL ? (int)(slash - where) : 0, where,
                 slash != NULL ? "/" : "", entry) < 0) {
        return NULL;
    }
    if (is_url(where)) {
        return loc;
    }
    char dir[PATH_MAX], real[PATH_MAX];
    char *d = slash != NULL ? strndup(where, (size_t)(slash - where)) : strdup(".");
    bool ok = realpath(d, dir) != NULL && realpath(loc, real) != NULL &&
              strncmp(real, dir, strlen(dir)) == 0 && real[strlen(dir)] == '/';
    free(d);
    if (!ok) {
        char *w = tool_escape(where), *e = tool_escape(entry);
        tool_error(m->t, "mip: %s: refusing '%s': not a file beneath the package's directory", w,
                   e);
        free(w);
        free(e);
        free(loc);
        return NULL;
    }
    return loc;
}

// Installs what a package.json lists: "hashes" from the index, "urls", then "deps".
static int install_json(struct mip *m, const char *where, cJSON *j) {
    int code = EXIT_OK;
    m->for_remote = is_url(where); // what it names is fetched on its behalf
    const cJSON *it;
    const cJSON *hashes = cJSON_GetObjectItemCaseSensitive(j, "hashes");
    cJSON_ArrayForEach(it, hashes) {
        const cJSON *name = cJSON_GetArrayItem(it, 0), *h = cJSON_GetArrayItem(it, 1);
        if (code != EXIT_OK || !cJSON_IsString(name) || !cJSON_IsString(h)) {
            continue;
        }
        if (!safe_name(name->valuestring) || strlen(h->valuestring) < 2 ||
            strspn(h->valuestring, "0123456789abcdef") != strlen(h->valuestring)) {
            refuse_name(m, where, "file name or hash", name->valuestring);
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
            refuse_name(m, where, "file name", name->valuestring);
            return EXIT_BOARD;
        }
        char *url = entry_location(m, where, u->valuestring);
        if (url == NULL) {
            return EXIT_BOARD; // said
        }
        struct fetched f;
        code = fetch(m, url, &f);
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
            code = install(m, name->valuestring, cJSON_IsString(v) ? v->valuestring : NULL,
                           is_url(where));
        }
    }
    return code;
}

static int install(struct mip *m, const char *pkg, const char *version, bool from_remote) {
    char *url = short_form_url(pkg, version);
    if (url != NULL) { // github:/gitlab: name a URL (the version is the branch)
        m->user_url |= !from_remote;
        int code = install(m, url, NULL, from_remote); // counted there, once
        free(url);
        return code;
    }
    if (++m->packages > PACKAGES_MAX) {
        tool_error(m->t, "mip: more than %d packages (a dependency loop?)", PACKAGES_MAX);
        return EXIT_BOARD;
    }
    if (from_remote && !is_url(pkg) && strchr(pkg, '/') != NULL) {
        tool_error(m->t,
                   "mip: refusing the dependency '%s' of a package from a URL: a remote "
                   "package never names a local path",
                   pkg);
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
        char *e = tool_escape(pkg); // it may come from a package's deps
        tool_error(m->t, "mip: '%s' is not a package name", e);
        free(e);
        return EXIT_USAGE;
    }
    if (!m->t->opts.quiet) {
        char *e = tool_escape(pkg);
        fprintf(m->t->out, "Installing %s to %s\n", e, m->target);
        free(e);
    }
    struct fetched f;
    m->for_remote = from_remote;
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
    m.user_url = is_url(index);
    int code = EXIT_OK;
    for (; code == EXIT_OK && i < argc; i++) {
        char *pkg = strdup(argv[i]), *at = is_url(pkg) ? NULL : strchr(pkg, '@');
        if (at != NULL) {
            *at = '\0';
        }
        m.user_url |= is_url(pkg);
        code = install(&m, pkg, at != NULL ? at + 1 : NULL, false);
        free(pkg);
    }
    if (m.curl_ready) {
        m.curl.global_cleanup();
        curl_unload(&m.curl);
    }
    free(index);
    return code;
}
