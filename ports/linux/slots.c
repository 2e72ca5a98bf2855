// The emulated hardware of a Linux board: RTC memory (a small file on a tmpfs), the A/B
// firmware slots with their boot-state record, and the launcher that plays bootloader and
// hardware watchdog: it boots the slot the record chooses, restarts the agent on every
// reset, and kills it when the heartbeat of its watchdog stops.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

int rtc_read(const char *path, uint8_t *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0; // missing: empty memory, as after a power cycle
    }
    ssize_t n = read(fd, buf, cap);
    close(fd);
    return n < 0 ? 0 : (int)n;
}

int rtc_write(const char *path, const uint8_t *buf, size_t len) {
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return -1;
    }
    bool ok = fs_write_fd(fd, buf, len) == MQB_OK;
    close(fd);
    return ok && rename(tmp, path) == 0 ? 0 : -1;
}

int rtc_mark(const char *path, bool normal) {
    uint8_t mem[RTC_MEMORY_MAX];
    int n = rtc_read(path, mem, sizeof(mem));
    if (n < MQB_RTC_MAGIC_LEN) {
        memset(mem + n, 0, (size_t)(MQB_RTC_MAGIC_LEN - n));
        n = MQB_RTC_MAGIC_LEN;
    }
    // Only the first 4 bytes: the rest of RTC memory belongs to the application.
    memcpy(mem, normal ? mqb_rtc_magic : mqb_rtc_cleared, MQB_RTC_MAGIC_LEN);
    return rtc_write(path, mem, (size_t)n);
}

static void copy_path(struct slots *s, char *out, size_t cap, int copy) {
    snprintf(out, cap, "%s/otadata%d", s->dir, copy);
}

static void slot_path(const struct slots *s, char *out, size_t cap, int slot) {
    snprintf(out, cap, "%s/slot%d", s->dir, slot);
}

static int record_read(struct slots *s) {
    uint8_t c[2][MQB_OTADATA_LEN * 2];
    int n[2];
    for (int i = 0; i < 2; i++) {
        char path[4200];
        copy_path(s, path, sizeof(path), i);
        n[i] = rtc_read(path, c[i], sizeof(c[i]));
    }
    return mqb_otadata_select(c[0], (size_t)n[0], c[1], (size_t)n[1], &s->st, &s->newer) == MQB_OK
               ? 0
               : -1;
}

static int write_copy(struct slots *s, int copy, const uint8_t buf[MQB_OTADATA_LEN]) {
    char path[4200];
    copy_path(s, path, sizeof(path), copy);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return -1;
    }
    bool ok = pwrite(fd, buf, MQB_OTADATA_LEN, 0) == MQB_OTADATA_LEN && fsync(fd) == 0;
    close(fd);
    return ok ? 0 : -1;
}

// Writes the record into the older copy first, in place, then into the other: a crash at any
// byte of either write leaves one intact copy with the last committed choice, and once both
// are written, damage to either copy alone changes nothing.
static int record_write(struct slots *s) {
    uint8_t buf[MQB_OTADATA_LEN];
    int first = 1 - s->newer;
    mqb_otadata_encode(&s->st, buf);
    if (write_copy(s, first, buf) != 0) {
        return -1;
    }
    s->newer = first;
    return write_copy(s, 1 - first, buf);
}

int slots_open(struct slots *s, const char *dir, int running) {
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
    s->running = running;
    if (running >= 0) { // an image half received when the agent died: nothing partial stays
        char path[4200];
        slot_path(s, path, sizeof(path), 1 - running);
        strcat(path, ".new");
        unlink(path);
    }
    return record_read(s);
}

int slots_ota_open(struct slots *s, int *fd) {
    char path[4200];
    if (record_read(s) != 0) {
        return -1;
    }
    if (!mqb_ota_may_write(&s->st, (uint8_t)s->running)) {
        return -2;
    }
    slot_path(s, path, sizeof(path), 1 - s->running);
    snprintf(s->tmp, sizeof(s->tmp), "%s.new", path);
    *fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    return *fd < 0 ? -1 : 0;
}

int slots_ota_close(struct slots *s, int fd, bool commit) {
    bool ok = !commit || fsync(fd) == 0;
    close(fd);
    if (!commit || !ok) {
        unlink(s->tmp);
        return ok ? 0 : -1;
    }
    char path[4200];
    int target = 1 - s->running;
    slot_path(s, path, sizeof(path), target);
    if (rename(s->tmp, path) != 0 || chmod(path, 0755) != 0 || record_read(s) != 0) {
        return -1;
    }
    mqb_ota_activate(&s->st, (uint8_t)target);
    return record_write(s);
}

bool slots_mark_valid(struct slots *s) {
    if (s->running < 0 || record_read(s) != 0 || s->st.slot != s->running ||
        !mqb_ota_mark_valid(&s->st)) {
        return false;
    }
    return record_write(s) == 0;
}

// ---- the launcher ----

static volatile sig_atomic_t launcher_stop;

static void on_launcher_signal(int sig) {
    launcher_stop = sig;
}

// Copies /proc/self/exe into path atomically (a temporary file, fsync, size check, rename):
// an interrupted install leaves no truncated image behind.
static int copy_self(const char *path) {
    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%s.install", path);
    int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    uint8_t buf[65536];
    ssize_t n = 0;
    off_t total = 0;
    while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof(buf))) > 0 &&
           fs_write_fd(out, buf, (size_t)n) == MQB_OK) {
        total += n;
    }
    struct stat st;
    bool ok = in >= 0 && out >= 0 && n == 0 && fstat(in, &st) == 0 && st.st_size == total &&
              fsync(out) == 0;
    if (in >= 0) {
        close(in);
    }
    ok = out >= 0 && close(out) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

// First run (no boot-state record yet): the running binary becomes the factory image in
// slot 0, then the record says so. A crash before the record is written repeats it all.
static int install(struct slots *s) {
    char path[4200];
    slot_path(s, path, sizeof(path), 0);
    if (copy_self(path) != 0) {
        fprintf(stderr, "mqrepld: cannot install the factory image in %s: %m\n", path);
        return -1;
    }
    s->st = (struct mqb_boot_state){.seq = 1, .slot = 0, .state = MQB_OTA_VALID, .prev = 0};
    s->newer = 1;
    return record_write(s);
}

// Runs one boot: the agent from slot, until it exits or its heartbeat stops. Returns the
// reset cause of the next boot.
static int boot_once(const struct agent_config *cfg, struct slots *s, int slot, int cause,
                     char **argv) {
    int hb[2];
    if (pipe2(hb, O_CLOEXEC) != 0) {
        return CAUSE_HARD;
    }
    pid_t pid = fork();
    if (pid == 0) {
        char v[32];
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        snprintf(v, sizeof(v), "%d", slot);
        setenv("MQREPLD_SLOT", v, 1);
        snprintf(v, sizeof(v), "%d", cause);
        setenv("MQREPLD_RESET_CAUSE", v, 1);
        int fd = dup(hb[1]); // without close-on-exec
        snprintf(v, sizeof(v), "%d", fd);
        setenv("MQREPLD_HEARTBEAT_FD", v, 1);
        char path[4200];
        slot_path(s, path, sizeof(path), slot);
        execv(path, argv);
        _exit(127);
    }
    close(hb[1]);
    // The hardware watchdog: a little longer than the agent's own, so the agent normally
    // resets itself first and says why.
    int limit_ms = cfg->wdt_timeout > 0 ? (int)(cfg->wdt_timeout * 1500) : -1;
    int next = CAUSE_HARD;
    for (;;) {
        struct pollfd p = {.fd = hb[0], .events = POLLIN};
        int r = poll(&p, 1, limit_ms);
        if (launcher_stop) {
            kill(pid, SIGTERM);
            break;
        }
        if (r == 0) {
            fprintf(stderr, "mqrepld launcher: no watchdog heartbeat: resetting\n");
            kill(pid, SIGKILL);
            rtc_mark(cfg->rtc_file, false); // control was lost: the next boot is safe mode
            next = CAUSE_WDT;
            break;
        }
        char buf[64];
        if (r > 0 && read(hb[0], buf, sizeof(buf)) <= 0) {
            break; // the agent exited (the pipe closed)
        }
    }
    close(hb[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_WATCHDOG) {
        next = CAUSE_WDT;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_RESET_SOFT) {
        next = CAUSE_SOFT;
    } else if (next != CAUSE_WDT) {
        next = CAUSE_HARD;
    }
    return next;
}

int launcher_run(const struct agent_config *cfg, char **argv) {
    struct slots s = {.running = -1};
    mkdir(cfg->slots, 0755);
    if (slots_open(&s, cfg->slots, -1) != 0 && install(&s) != 0) {
        fprintf(stderr, "mqrepld: cannot set up the slots in %s\n", cfg->slots);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_launcher_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int cause = CAUSE_PWRON;
    while (!launcher_stop) {
        if (record_read(&s) != 0) {
            fprintf(stderr, "mqrepld: both copies of the boot-state record are damaged\n");
            return 1;
        }
        bool changed;
        int slot = mqb_ota_boot(&s.st, &changed);
        if (changed && record_write(&s) != 0) {
            fprintf(stderr, "mqrepld: cannot write the boot-state record: %m\n");
        }
        if (s.st.state == MQB_OTA_ABORTED && changed) {
            fprintf(stderr, "mqrepld launcher: slot %d never proved itself: rolled back\n",
                    s.st.prev);
        }
        fprintf(stderr, "mqrepld launcher: booting slot %d\n", slot);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cause = boot_once(cfg, &s, slot, cause, argv);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        // A board that crashes at once does not spin the CPU.
        if (!launcher_stop && t1.tv_sec - t0.tv_sec < 2) {
            usleep(500000);
        }
    }
    return 0;
}
