// mqboard: the host tool's entry point: options (over the settings of settings.c), the
// command table every subcommand is dispatched through, help, and the --json document.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <wordexp.h>

#include "tool.h"

volatile sig_atomic_t tool_interrupted;
volatile sig_atomic_t tool_leaving;

struct command {
    const char *name;
    int (*run)(struct tool *t, int argc, char **argv);
    const char *args;
    const char *summary;
    const char *details; // for `mqboard help NAME` (may be NULL)
};

static const char eval_details[] =
    "The code runs in the board's __main__. Ctrl-C interrupts it on the board; a second\n"
    "Ctrl-C, SIGTERM, SIGHUP or a closed stdout make mqboard interrupt it and leave. Should\n"
    "mqboard vanish without a word, the board interrupts the code after --lease seconds.\n"
    "--no-follow starts it and leaves it running. --timeout-run interrupts it after a time\n"
    "(again every 2 s; after 3 tries mqboard gives up and says so). When the board is busy\n"
    "with another command, mqboard says so at once and waits (--nonblock: fails).\n";
static const char repl_details[] =
    "Lines are sent as the console REPL takes them: a block (a line ending with ':') runs\n"
    "when an empty line closes it; open brackets and triple quotes continue the input.\n"
    "Output appears as the board produces it. Ctrl-C interrupts the running code (at the\n"
    "prompt it drops the line), Ctrl-D at the prompt leaves. TAB completes names and\n"
    "attributes from the board's __main__. History: ~/.mqboard_history. --capture FILE\n"
    "appends the session (input and output) to FILE.\n";
static const char reset_details[] =
    "The agent resets the board outside the interpreter, within a second, whatever the code\n"
    "on it does. Every mode except --safe boots normal mode.\n"
    "Waiting: mqboard then waits (up to 30 s) until the board is back, that is until its\n"
    "retained status says online with a new boot id, so that `mqboard reset && mqboard eval\n"
    "1` finds it. --no-wait returns as soon as the board accepted the reset. A board that\n"
    "runs the original code (no status) gets the original's reset program, without waiting.\n";

static const char mount_details[] =
    "For the rest of the invocation the board sees LOCALDIR (read-only; --rw: writable) as\n"
    "the directory /remote: open('/remote/x.txt'), os.listdir('/remote'), and `import` looks\n"
    "there first. The board asks mqboard for each file over MQTT; mqboard serves only what is\n"
    "beneath LOCALDIR (no '..', no symlink that leads out). Chain the commands that use it\n"
    "(mqboard mount src + run main.py); without one, a repl starts. The mount ends when\n"
    "mqboard leaves (or 15 s after it vanished). Needs our agent (mqrepld).\n"
    "--rw trusts the board with LOCALDIR: it can write any file there, such as .git/hooks/*\n"
    "or a .bashrc-like file that runs later on this machine. Mount a directory that holds\n"
    "nothing that runs here. Only regular files are written (never a FIFO or a device).\n"
    "-l (--unsafe-links, as mpremote's): symlinks in LOCALDIR may lead out of it.\n";

static const char key_details[] =
    "A board started with keys (mqrepld --keys DIR) obeys only commands signed by a key in its\n"
    "authorized_keys, and signs its status and replies with a key of its own. mqboard signs\n"
    "with CONFIG/id_mqb (--key FILE, MQBOARD_KEY, key = FILE) when the board's status asks for\n"
    "it, and records each board's key the first time it sees it (CONFIG/known_boards, as ssh's\n"
    "known_hosts); a board that later shows another key is refused. CONFIG is\n"
    "$XDG_CONFIG_HOME/mqboard or ~/.config/mqboard.\n"
    "  mqboard key generate              make CONFIG/id_mqb (mode 0600) and id_mqb.pub\n"
    "  mqboard key show                  the public key line and its fingerprint\n"
    "  mqboard key list                  the boards' keys recorded here\n"
    "  mqboard trust add colleague.pub   the board also obeys that key\n"
    "  mqboard trust remove SHA256:...   revoke a key (never the last one)\n"
    "A board without keys takes its first one on the board itself: copy id_mqb.pub to its\n"
    "DIR/authorized_keys (docs/security.md).\n";

static const struct command commands[] = {
    {"eval", cmd_eval, "EXPR|-", "evaluate Python on the board; shows output and result",
     eval_details},
    {"exec", cmd_exec, "CODE|-", "run Python statements on the board; shows their output",
     eval_details},
    {"run", cmd_run, "FILE", "run a local script on the board, output as it is produced",
     eval_details},
    {"put", cmd_put, "[-r] LOCAL... REMOTE", "copy files (trees with -r) to the board", NULL},
    {"get", cmd_get, "[-r] REMOTE [LOCAL|-]", "copy a file (tree with -r) from the board", NULL},
    {"cp", cmd_cp, "[-rf] SRC... DST", "copy files; ':' marks board paths (cp main.py :)", NULL},
    {"cat", cmd_cat, "REMOTE...", "print board files", NULL},
    {"ls", cmd_ls, "[-lrRa] [DIR]", "list a board directory (-r/-R: recursive)", NULL},
    {"tree", cmd_tree, "[-s] [DIR]", "show a board directory tree (-s: with sizes)", NULL},
    {"rm", cmd_rm, "[-rfv] PATH...",
     "remove board files (trees with -r; -f: missing is fine; -v: say each)", NULL},
    {"edit", cmd_edit, ":FILE", "edit a board file in $EDITOR; put back if it changed", NULL},
    {"touch", cmd_touch, "FILE...", "create empty board files (existing ones stay)", NULL},
    {"mkdir", cmd_mkdir, "[-p] DIR...", "create board directories", NULL},
    {"rmdir", cmd_rmdir, "DIR...", "remove empty board directories", NULL},
    {"mv", cmd_mv, "SRC DST", "rename or move a board file or directory", NULL},
    {"sha256sum", cmd_sha256sum, "FILE...", "SHA-256 of board files", NULL},
    {"df", cmd_df, "[PATH]", "the board filesystem's size and free space", NULL},
    {"sync", cmd_sync, "[-n] SPEC | [-n] [--delete] LOCALDIR REMOTEDIR",
     "copy what differs (by SHA-256) to the board", NULL},
    {"mip", cmd_mip, "install [--index URL|DIR] [--target DIR] PACKAGE[@VERSION]...",
     "install packages from a MicroPython package index (fetched here, put verified)", NULL},
    {"ota", cmd_ota, "IMAGE", "stream a firmware image into the board's inactive slot", NULL},
    {"reset", cmd_reset, "[--normal|--safe|--soft|--hard] [--no-wait]", "reset the board",
     reset_details},
    {"rtc", cmd_rtc, "[--set]", "the board's clock; --set sets it to this host's time", NULL},
    {"view", cmd_view, "[-n COUNT]",
     "follow the board's log from now on (no backlog); -n: end after COUNT lines", NULL},
    {"status", cmd_status, "", "the board's presence: online/offline, version, mode", NULL},
    {"mount", cmd_mount, "[--rw] [-l] LOCALDIR",
     "the board sees LOCALDIR as /remote (import looks there first) for the chained commands, "
     "or a repl",
     mount_details},
    {"repl", cmd_repl, "[--capture FILE]",
     "an interactive Python prompt on the board (history, TAB completion)", repl_details},
    {"boards", cmd_boards, "[--probe] [PATTERN]",
     "every board with a status on the broker (any prefix depth; MQTT pattern or glob)", NULL},
    {"ping", cmd_ping, "[-c COUNT]", "time round trips of small evals (min/median/p99/max)", NULL},
    {"key", cmd_key, "generate|show [FILE] | list",
     "your signing key (default CONFIG/id_mqb), and the boards' keys known here", key_details},
    {"trust", cmd_trust, "list | add KEY.pub | remove SHA256:FPR",
     "the keys the board obeys (signed by a key it already obeys)", key_details},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f) {
    fprintf(
        f, "usage: mqboard [options] COMMAND [args]      (mqboard help COMMAND for more)\n\n"
           "options:\n"
           "  -b, --board NAME        use the [NAME] profile of the config file\n"
           "  -s, --server HOST       broker host (default 127.0.0.1)\n"
           "  -p, --port PORT         broker port (default 1883, 8883 with TLS)\n"
           "      --prefix PREFIX     the board's topic prefix, e.g. esp32/kitchen\n"
           "      --topic PREFIX      same as --prefix (the original tool's name)\n"
           "  -T, --timeout SECONDS   give up after this much silence from the board (10)\n"
           "      --timeout-run SECS  interrupt eval/exec/run after this long (exit 124)\n"
           "      --chunk BYTES       at most this much data per message in transfers\n"
           "  -u, --username USER     broker user name\n"
           "  -P, --password PASS     broker password (visible in ps: prefer the next two)\n"
           "      --password-file F   read the broker password from the first line of F\n"
           "                          (or MQBOARD_PASSWORD, or password-file = F in config)\n"
           "      --tls               use TLS (system CA certificates)\n"
           "      --cafile FILE       use TLS with this CA certificate\n"
           "      --psk-identity ID   TLS-PSK identity\n"
           "      --psk HEXKEY        TLS-PSK key (visible in ps: prefer --psk-file, MQBOARD_PSK)\n"
           "      --psk-file FILE     read the TLS-PSK key from the first line of FILE\n"
           "      --key FILE          sign commands with this key (default CONFIG/id_mqb)\n"
           "      --nonblock          fail at once (exit 1) when the board is busy with another\n"
           "                          command, instead of waiting for it\n"
           "      --no-follow         eval/exec/run: start the code and leave it running on\n"
           "                          the board (otherwise it is interrupted when mqboard goes)\n"
           "  -n, --no-stdin          the board's program reads end of file, never our standard\n"
           "                          input (as ssh -n; for loops that read their own input)\n"
           "      --lease SECONDS     the board interrupts our eval when it has not heard\n"
           "                          from us this long (15)\n"
           "      --all               every board that has a status (see boards)\n"
           "      --parallel N        many boards: this many at a time (32, at most 256)\n"
           "      --expire SECONDS    a command not started on the board within this long (by\n"
           "                          its clock) is refused there, never run late (600; 0: no\n"
           "                          limit)\n"
           "      --canary N          many boards: N first, then waves of --parallel; stop when\n"
           "      --max-failures K    more than K boards failed (ota waits for each update\n"
           "                          to be confirmed or rolled back)\n"
           "  -j, --json              print one JSON document (result, output, error, time)\n"
           "  -q, --quiet             no progress bar\n"
           "  -v, --verbose           say more (twice: every message)\n"
           "  -V, --version           print the version\n"
           "  -h, --help              this help\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(f, "\nmpremote's habits: mqboard alone (on a terminal) is repl; fs CMD is CMD (fs ls,\n"
               "fs cp, fs cat, ...); fs hashfile and hashfile are sha256sum; soft-reset is\n"
               "reset --soft; cp -f, rm -v; ':' marks board paths; a lone '+' chains commands.\n");
    fprintf(f, "\nSettings: $XDG_CONFIG_HOME/mqboard/config (key = value, [NAME] profiles), then\n"
               "MQBOARD_SERVER, MQBOARD_PORT, MQBOARD_PREFIX, MQBOARD_TIMEOUT, MQBOARD_USERNAME,\n"
               "MQBOARD_PASSWORD, MQBOARD_PSK_IDENTITY, MQBOARD_PSK, MQBOARD_BOARD, then options.\n"
               "Exit codes: 0 ok, 1 board error, 2 usage, 3 timeout, 4 broker connection,\n"
               "5 local file, 130 interrupted.\n");
}

static const struct command *find_command(const char *name) {
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

// mpremote's ':' marks a board path: `put main.py :` or `ls :lib`. For the commands whose
// arguments are board paths (all of them, or the last, or the first), a leading ':' goes; ':'
// alone is the board's root. cp keeps its marks: they say which side each path is on.
static void strip_board_marks(const char *cmd, int argc, char **argv) {
    static const char *const all[] = {"cat",   "ls", "tree",      "rm", "mkdir",
                                      "rmdir", "mv", "sha256sum", "df", "touch"};
    bool every = false;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        every |= strcmp(cmd, all[i]) == 0;
    }
    bool last = strcmp(cmd, "put") == 0 || strcmp(cmd, "sync") == 0;
    bool first = strcmp(cmd, "get") == 0;
    int firstarg = 1;
    while (firstarg < argc && argv[firstarg][0] == '-' && argv[firstarg][1] != '\0') {
        firstarg++;
    }
    for (int i = 1; i < argc; i++) {
        bool board =
            (every && argv[i][0] == ':') || (last && i == argc - 1) || (first && i == firstarg);
        if (board && argv[i][0] == ':') {
            argv[i] = argv[i][1] != '\0' ? argv[i] + 1 : "/";
        }
    }
}

// mpremote's spellings, for fingers that know it (after the user's own aliases): `fs` before a
// file command, `fs hashfile`, `soft-reset`.
static const char *const mpremote_names[][2] = {
    {"soft-reset", "reset --soft"},
    {"hashfile", "sha256sum"},
};

static const char *alias_of(const struct tool_opts *o, const char *name) {
    for (int i = 0; i < o->naliases; i++) {
        if (strcmp(o->alias_name[i], name) == 0) {
            return o->alias_value[i];
        }
    }
    for (size_t i = 0; i < sizeof(mpremote_names) / sizeof(mpremote_names[0]); i++) {
        if (strcmp(mpremote_names[i][0], name) == 0) {
            return mpremote_names[i][1];
        }
    }
    return NULL;
}

static bool known(const struct tool_opts *o, const char *name) {
    return find_command(name) != NULL || alias_of(o, name) != NULL || strcmp(name, "fs") == 0;
}

enum {
    OPT_PREFIX = 256,
    OPT_TLS,
    OPT_CAFILE,
    OPT_PSK_ID,
    OPT_PSK,
    OPT_PSK_FILE,
    OPT_KEY,
    OPT_PASSWORD_FILE,
    OPT_TIMEOUT_RUN,
    OPT_CHUNK,
    OPT_NONBLOCK,
    OPT_NO_FOLLOW,
    OPT_LEASE,
    OPT_EXPIRE,
    OPT_ALL,
    OPT_PARALLEL,
    OPT_CANARY,
    OPT_MAX_FAILURES,
};

static const struct option long_opts[] = {
    {"board", required_argument, NULL, 'b'},
    {"server", required_argument, NULL, 's'},
    {"port", required_argument, NULL, 'p'},
    {"prefix", required_argument, NULL, OPT_PREFIX},
    {"topic", required_argument, NULL, OPT_PREFIX},
    {"timeout", required_argument, NULL, 'T'},
    {"timeout-run", required_argument, NULL, OPT_TIMEOUT_RUN},
    {"chunk", required_argument, NULL, OPT_CHUNK},
    {"username", required_argument, NULL, 'u'},
    {"password", required_argument, NULL, 'P'},
    {"tls", no_argument, NULL, OPT_TLS},
    {"cafile", required_argument, NULL, OPT_CAFILE},
    {"psk-identity", required_argument, NULL, OPT_PSK_ID},
    {"psk", required_argument, NULL, OPT_PSK},
    {"psk-file", required_argument, NULL, OPT_PSK_FILE},
    {"key", required_argument, NULL, OPT_KEY},
    {"password-file", required_argument, NULL, OPT_PASSWORD_FILE},
    {"nonblock", no_argument, NULL, OPT_NONBLOCK},
    {"no-follow", no_argument, NULL, OPT_NO_FOLLOW},
    {"no-stdin", no_argument, NULL, 'n'},
    {"lease", required_argument, NULL, OPT_LEASE},
    {"expire", required_argument, NULL, OPT_EXPIRE},
    {"all", no_argument, NULL, OPT_ALL},
    {"parallel", required_argument, NULL, OPT_PARALLEL},
    {"canary", required_argument, NULL, OPT_CANARY},
    {"max-failures", required_argument, NULL, OPT_MAX_FAILURES},
    {"json", no_argument, NULL, 'j'},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};
static const char short_opts[] = "+b:s:p:T:u:P:njqvVh";

// A command refused its arguments: if one of them is a global option (mqboard ls --json),
// says where it belongs.
static void hint_misplaced_option(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        for (const struct option *o = long_opts; a[0] == '-' && o->name != NULL; o++) {
            bool is_long = a[1] == '-' && strncmp(a + 2, o->name, strlen(o->name)) == 0 &&
                           (a[2 + strlen(o->name)] == '\0' || a[2 + strlen(o->name)] == '=');
            bool is_short = o->val < 256 && a[1] == o->val && a[2] == '\0';
            if (is_long || is_short) {
                fprintf(stderr,
                        "mqboard: %s is an option of mqboard itself: put it before the command "
                        "(mqboard %s %s ...)\n",
                        a, a, argv[0]);
                return;
            }
        }
    }
}

// Runs one command (argv[0] its name, or an alias whose words, split as the shell would but
// without running anything, take its place before the rest of the arguments).
static int run_one(struct tool *t, int argc, char **argv) {
    if (strcmp(argv[0], "fs") == 0) { // mpremote's `fs ls`, `fs cp`, ...: the command itself
        if (argc < 2 || !known(&t->opts, argv[1]) || strcmp(argv[1], "fs") == 0) {
            fprintf(stderr, "usage: mqboard fs ls|cat|cp|rm|mkdir|rmdir|touch|tree|"
                            "sha256sum|hashfile ...\n");
            return EXIT_USAGE;
        }
        argc--;
        argv++;
    }
    const char *alias = alias_of(&t->opts, argv[0]);
    wordexp_t w;
    char **av = argv;
    if (alias != NULL) {
        if (wordexp(alias, &w, WRDE_NOCMD | WRDE_UNDEF) != 0 || w.we_wordc == 0 ||
            find_command(w.we_wordv[0]) == NULL) {
            fprintf(stderr,
                    "mqboard: alias '%s' cannot be split into words, or names no "
                    "command\n",
                    argv[0]);
            return EXIT_USAGE;
        }
        av = calloc(w.we_wordc + (size_t)argc, sizeof(char *));
        memcpy(av, w.we_wordv, w.we_wordc * sizeof(char *));
        memcpy(av + w.we_wordc, argv + 1, (size_t)(argc - 1) * sizeof(char *));
        argc += (int)w.we_wordc - 1;
    }
    const struct command *cmd = find_command(av[0]);
    t->command = cmd->name;
    strip_board_marks(cmd->name, argc, av);
    char *saved = av[argc];
    av[argc] = NULL; // a command sees only its own arguments
    int code = cmd->run(t, argc, av);
    if (code == EXIT_USAGE) {
        hint_misplaced_option(argc, av);
    }
    av[argc] = saved;
    if (alias != NULL) {
        free(av);
        wordfree(&w);
    }
    return code;
}

static int help(int argc, char **argv) {
    if (argc < 2) {
        usage(stdout);
        return EXIT_OK;
    }
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].name, argv[1]) == 0) {
            printf("usage: mqboard [options] %s %s\n\n%s.\n", commands[i].name, commands[i].args,
                   commands[i].summary);
            if (commands[i].details != NULL) {
                printf("\n%s\n", commands[i].details);
            }
            printf("See mqboard(1) for the details of every command.\n");
            return EXIT_OK;
        }
    }
    fprintf(stderr, "mqboard: no command '%s' (see mqboard help)\n", argv[1]);
    return EXIT_USAGE;
}

static void unknown_option(const char *arg) {
    const char *best = NULL;
    size_t best_d = 3; // at most two edits away
    const char *name = arg + strspn(arg, "-");
    size_t nlen = strcspn(name, "=");
    for (const struct option *o = long_opts; o->name != NULL; o++) {
        // Levenshtein distance of name[0..nlen) and o->name, in two rows.
        size_t m = strlen(o->name), prev[64], cur[64];
        if (m >= 63 || nlen >= 63) {
            continue;
        }
        for (size_t j = 0; j <= m; j++) {
            prev[j] = j;
        }
        for (size_t i = 1; i <= nlen; i++) {
            cur[0] = i;
            for (size_t j = 1; j <= m; j++) {
                size_t sub = prev[j - 1] + (name[i - 1] != o->name[j - 1]);
                size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
                cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            }
            memcpy(prev, cur, (m + 1) * sizeof(size_t));
        }
        if (prev[m] < best_d) {
            best_d = prev[m];
            best = o->name;
        }
    }
    if (best != NULL) {
        fprintf(stderr, "mqboard: did you mean --%s? (mqboard --help lists the options)\n", best);
    } else {
        fprintf(stderr, "mqboard: mqboard --help lists the options\n");
    }
}

// Parses the options; returns the index of the command, or -1 after a message.
static int parse_opts(struct tool_opts *o, int argc, char **argv) {
    // The layers, each over the one before: the config file's top level, the MQBOARD_BOARD
    // profile, the variables, the -b profile, the options. A board named on the command line
    // is never replaced by the environment.
    const char *board = getenv("MQBOARD_BOARD"), *option_board = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, short_opts, long_opts, NULL)) != -1) {
        if (c == 'b') {
            option_board = optarg;
        }
    }
    board = option_board != NULL ? option_board : board;
    if (!settings_load_config(o, board != NULL && board[0] ? board : NULL, true,
                              option_board == NULL) ||
        !settings_load_env(o) ||
        (option_board != NULL && !settings_load_config(o, option_board, false, true))) {
        return -1;
    }
    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, short_opts, long_opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'b': break;
        case 's': ok = settings_set(o, "server", optarg, "option"); break;
        case 'p': ok = settings_set(o, "port", optarg, "option"); break;
        case OPT_PREFIX: ok = settings_set(o, "prefix", optarg, "option --prefix"); break;
        case 'T': ok = settings_set(o, "timeout", optarg, "option"); break;
        case OPT_TIMEOUT_RUN:
            ok = settings_number("--timeout-run", optarg, 0.001, 1e9, &o->timeout_run);
            break;
        case OPT_CHUNK: ok = settings_number("--chunk", optarg, 256, 1 << 20, &o->chunk); break;
        case 'u': ok = settings_set(o, "username", optarg, "option"); break;
        case 'P': ok = settings_set(o, "password", optarg, "option"); break;
        case OPT_TLS: o->tls = true; break;
        case OPT_CAFILE: ok = settings_set(o, "cafile", optarg, "option"); break;
        case OPT_PSK_ID: ok = settings_set(o, "psk-identity", optarg, "option"); break;
        case OPT_PSK: ok = settings_set(o, "psk", optarg, "option"); break;
        case OPT_PSK_FILE: ok = settings_set(o, "psk-file", optarg, "option"); break;
        case OPT_KEY: ok = settings_set(o, "key", optarg, "option"); break;
        case OPT_PASSWORD_FILE: ok = settings_set(o, "password-file", optarg, "option"); break;
        case OPT_NONBLOCK: o->nonblock = true; break;
        case OPT_NO_FOLLOW: o->no_follow = true; break;
        case 'n': o->no_stdin = true; break;
        case OPT_LEASE: ok = settings_number("--lease", optarg, 1, 3600, &o->lease); break;
        case OPT_EXPIRE: ok = settings_number("--expire", optarg, 0, 1e8, &o->expire); break;
        case OPT_ALL: o->all = true; break;
        case OPT_PARALLEL: {
            double v;
            ok = settings_number("--parallel", optarg, 1, FANOUT_MAX, &v);
            o->parallel = (int)v;
            break;
        }
        case OPT_CANARY: {
            double v;
            ok = settings_number("--canary", optarg, 1, 1e6, &v);
            o->canary = (int)v;
            break;
        }
        case OPT_MAX_FAILURES: {
            double v;
            ok = settings_number("--max-failures", optarg, 0, 1e6, &v);
            o->max_failures = (int)v;
            break;
        }
        case 'j': o->json = true; break;
        case 'q': o->quiet = true; break;
        case 'v': o->verbose++; break;
        case 'V': printf("mqboard " MQBOARD_VERSION "\n"); exit(EXIT_OK);
        case 'h': usage(stdout); exit(EXIT_OK);
        default: unknown_option(argv[optind - 1]); return -1;
        }
        if (!ok) {
            return -1;
        }
    }
    if (o->verbose > 0 && o->prefix != NULL) {
        fprintf(stderr, "mqboard: board '%s' (from %s%s%s)\n", o->prefix, o->prefix_from,
                o->prefix_overrides[0] != '\0' ? "; it replaces " : "", o->prefix_overrides);
    }
    return optind;
}

static bool check_opts(struct tool_opts *o, const char *cmd) {
    if ((o->prefix == NULL || o->prefix[0] == '\0') &&
        (strcmp(cmd, "boards") == 0 || o->all || o->group_members != NULL)) {
        o->prefix = "mqboard/-"; // boards looks at every prefix; the session needs one
    }
    if (o->prefix == NULL || o->prefix[0] == '\0') {
        fprintf(stderr, "mqboard: which board? Give --prefix PREFIX (or MQBOARD_PREFIX, or a "
                        "profile with -b NAME)\n");
        return false;
    }
    if ((o->psk == NULL) != (o->psk_identity == NULL)) {
        fprintf(stderr, "mqboard: --psk and --psk-identity go together\n");
        return false;
    }
    if (o->port == 0) {
        o->port = o->tls || o->cafile != NULL || o->psk != NULL ? 8883 : 1883;
    }
    return true;
}

// SIGINT interrupts the board's eval; a second SIGINT, SIGTERM or SIGHUP makes mqboard leave,
// after it told the board to interrupt the eval (tool_leaving). A signal after that leaves
// at once.
static void on_signal(int sig) {
    if (tool_leaving) {
        _exit(128 + sig);
    }
    if (sig != SIGINT || tool_interrupted) {
        tool_leaving = sig;
    }
    tool_interrupted = 1;
}

// The peak resident memory of this process since it started (VmHWM), in kB.
static long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kb;
}

// The --json document: what the command printed, its error text, its result, the time and
// the peak memory.
static void print_json(struct tool *t, int code) {
    fclose(t->out);
    fclose(t->err);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "command", t->command);
    cJSON_AddBoolToObject(j, "ok", code == EXIT_OK);
    cJSON_AddNumberToObject(j, "exit_code", code);
    char *lit = tool_json_string(t->out_json.buf != NULL ? t->out_json.buf : "", t->out_json.len);
    cJSON_AddRawToObject(j, "output", lit);
    free(lit);
    if (t->out_json.dropped > 0) { // bounded: past JSON_OUT_MAX the output is counted only
        cJSON_AddNumberToObject(j, "output_dropped_bytes", (double)t->out_json.dropped);
    }
    if (t->err_json.len > 0) {
        lit = tool_json_string(t->err_json.buf, t->err_json.len);
        cJSON_AddRawToObject(j, "error", lit);
        free(lit);
    } else {
        cJSON_AddNullToObject(j, "error");
    }
    if (t->result != NULL) {
        tool_json_clean(t->result);
        cJSON_AddItemToObject(j, "result", t->result);
        t->result = NULL;
    } else {
        cJSON_AddNullToObject(j, "result");
    }
    if (t->session.busy != NULL) { // the board was busy with another command first
        tool_json_clean(t->session.busy);
        cJSON_AddItemToObject(j, "busy", t->session.busy);
        t->session.busy = NULL;
    }
    cJSON_AddNumberToObject(j, "elapsed_s", tool_now() - t->started);
    cJSON_AddNumberToObject(j, "peak_rss_kb", (double)peak_rss_kb());
    char *s = cJSON_Print(j);
    puts(s);
    free(s);
    cJSON_Delete(j);
    free(t->out_json.buf);
    free(t->err_json.buf);
}

// The commands of one invocation (a chain): argv and where each command starts.
struct chain {
    int argc;
    char **argv;
    const int *starts;
    int nseg;
};

static void open_outputs(struct tool *t) {
    t->out = stdout;
    t->err = stderr;
    if (t->opts.json) {
        t->out = tool_bounded_stream(&t->out_json, JSON_OUT_MAX);
        t->err = tool_bounded_stream(&t->err_json, JSON_OUT_MAX);
    }
}

// Runs the chain against t->opts.prefix: the whole of a single-board invocation.
static int run_chain(struct tool *t, void *ctx) {
    const struct chain *c = ctx;
    open_outputs(t);
    int code = EXIT_OK;
    for (int k = 0; k < c->nseg && code == EXIT_OK; k++) {
        int end = k + 1 < c->nseg ? c->starts[k + 1] - 1 : c->argc; // the '+' before the next
        code = run_one(t, end - c->starts[k], c->argv + c->starts[k]);
    }
    if (code == EXIT_OK && t->session.mount_root != NULL && strcmp(t->command, "mount") == 0) {
        char *repl[] = {"repl", NULL};
        code = cmd_repl(t, 1, repl); // a mount with nothing after it: work in it (as mpremote)
    }
    if (tool_leaving && code == EXIT_INTERRUPTED) {
        code = 128 + tool_leaving;
    }
    session_close(&t->session);
    if (t->opts.json) {
        print_json(t, code);
    }
    fflush(NULL);
    cJSON_Delete(t->result);
    t->result = NULL;
    cJSON_Delete(t->session.busy);
    t->session.busy = NULL;
    return code;
}

static bool is_pattern(const char *prefix) {
    return prefix != NULL && strpbrk(prefix, "+#*?[") != NULL;
}

// The boards of a group, a pattern or --all. Returns false for one board (the usual case);
// else *n targets (malloc'd array of borrowed strings; *n < 0: the exit code, negated, when the
// boards could not be found).
static bool many_targets(struct tool *t, const char ***targets, int *n) {
    struct tool_opts *o = &t->opts;
    if (o->group_members != NULL) {
        char *copy = strdup(o->group_members), *save = NULL;
        for (char *m = strtok_r(copy, " \t,", &save); m != NULL;
             m = strtok_r(NULL, " \t,", &save)) {
            const char *prefix = m;
            for (int i = 0; i < o->nprofiles; i++) {
                prefix = strcmp(o->profile_name[i], m) == 0 ? o->profile_prefix[i] : prefix;
            }
            *targets = realloc(*targets, (size_t)(*n + 1) * sizeof(char *));
            (*targets)[(*n)++] = settings_keep(prefix);
        }
        free(copy);
        return true;
    }
    if (!o->all && !is_pattern(o->prefix)) {
        return false;
    }
    int code;
    t->out = stdout;
    t->err = stderr;
    cJSON *found = boards_find(t, o->all ? NULL : o->prefix, false, &code);
    session_close(&t->session);
    t->connected = false;
    memset(&t->session, 0, sizeof(t->session));
    if (found == NULL) {
        *n = -code; // the exit code, negated
        return true;
    }
    const cJSON *b;
    cJSON_ArrayForEach(b, found) {
        *targets = realloc(*targets, (size_t)(*n + 1) * sizeof(char *));
        (*targets)[(*n)++] = settings_keep(b->string);
    }
    cJSON_Delete(found);
    return true;
}

int main(int argc, char **argv) {
    static struct tool t; // large (the session): not on the stack
    // Replies come in messages of up to 64 KiB, each copied and soon freed: by default glibc
    // gives the top of the heap back to the kernel and takes it again for nearly every one
    // (thousands of brk calls in a 100 MB get, a third of its time). Keep it.
    mallopt(M_TRIM_THRESHOLD, 4 << 20);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    t.started = tool_now();
    t.opts.timeout = 10;
    t.opts.lease = LEASE_S;
    t.opts.expire = EXPIRE_S;
    t.opts.server = "127.0.0.1";
    int first = parse_opts(&t.opts, argc, argv);
    if (first < 0) {
        return EXIT_USAGE;
    }
    static char *repl_argv[] = {"mqboard", "repl", NULL};
    if (first >= argc && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)) {
        argc = 2; // no command on a terminal: a repl, as mpremote starts one
        argv = repl_argv;
        first = 1;
    } else if (first >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[first], "help") == 0) {
        return help(argc - first, argv + first);
    }
    if (strcmp(argv[first], "key") == 0) { // local: no board, no broker
        return cmd_key(&t, argc - first, argv + first);
    }
    // Commands chained with a lone '+' that is followed by a command name (mpremote's habit):
    // `mqboard put main.py : + exec 'import main' + ls`. They run in order over one
    // connection; the first that fails ends the chain.
    int starts[64], nseg = 0;
    starts[nseg++] = first;
    for (int i = first + 1; i + 1 < argc && nseg < 64; i++) {
        if (strcmp(argv[i], "+") == 0 && known(&t.opts, argv[i + 1])) {
            starts[nseg++] = i + 1;
        }
    }
    for (int k = 0; k < nseg; k++) {
        if (!known(&t.opts, argv[starts[k]])) {
            fprintf(stderr, "mqboard: unknown command '%s' (see mqboard help)\n", argv[starts[k]]);
            return EXIT_USAGE;
        }
    }
    if (nseg > 1 && t.opts.json) {
        fprintf(stderr, "mqboard: --json takes one command, not a chain\n");
        return EXIT_USAGE;
    }
    if (!check_opts(&t.opts, argv[first])) {
        return EXIT_USAGE;
    }
    struct sigaction sa = {.sa_handler = on_signal}; // no SA_RESTART: waits wake up
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct chain c = {argc, argv, starts, nseg};
    const char **targets = NULL;
    int ntargets = 0;
    if (!many_targets(&t, &targets, &ntargets)) {
        return run_chain(&t, &c);
    }
    if (ntargets < 0) {
        return -ntargets;
    }
    open_outputs(&t);
    // eval, exec and run go to every board over one connection; the rest, a process each.
    int code = ntargets == 0 ? EXIT_OK
               : nseg == 1   ? fleet_eval(&t, targets, ntargets, argc - first, argv + first)
                             : -1;
    if (ntargets > 0 && code == -1) {
        code = t.opts.canary > 0 ? rollout(&t, targets, ntargets, run_chain, &c)
                                 : fanout(&t, targets, ntargets, run_chain, &c);
    }
    if (ntargets == 0) {
        tool_error(&t, "no board matches");
        code = EXIT_TIMEOUT;
    }
    if (t.opts.json) {
        t.command = argv[first];
        print_json(&t, code);
    }
    cJSON_Delete(t.result);
    free(targets);
    return code;
}
