/* The front end <-> helper protocol (docs/helper.md). Python's side is
 * ocirun/helper/protocol.py; tests/unit/test_helper_protocol.py checks that the
 * two agree.
 *
 * One SOCK_STREAM connection per call. Every message is a frame: a header
 * (struct ocirun_frame) sent together with the message's fds (SCM_RIGHTS),
 * then `len` bytes of payload. All integers are native-endian (both ends run
 * on one machine).
 *
 *  | message    | direction        | payload                              | fds                      |
 *  |------------|------------------|--------------------------------------|--------------------------|
 *  | REQUEST    | front -> worker  | struct ocirun_request, fd numbers,   | pidfd of the caller, its |
 *  |            |                  | argv, envp (NUL-terminated strings)  | root and cwd (O_PATH),   |
 *  |            |                  |                                      | the commit token, the    |
 *  |            |                  |                                      | fd channel               |
 *  | FDS        | front -> worker, | -                                    | [/dev/tty], the caller's |
 *  |            | in the channel   |                                      | fd table                 |
 *  | ACCEPT     | worker -> front  | -                                    | pidfd of the worker      |
 *  | REFUSE     | worker -> front  | why (text, for debugging)            | -                        |
 *  | CLONE      | worker -> front  | struct ocirun_clone, relocations,    | the fds the plan and the |
 *  |            |                  | fd slots, the plan's arena           | call name                |
 *  | SPAWN      | worker -> front  | struct ocirun_spawn, actions, path,  | the DUP2 sources         |
 *  |            |                  | argv, envp                           |                          |
 *  | WAITPID    | worker -> front  | pid, options                         | -                        |
 *  | SUBREAPER  | worker -> front  | -                                    | -                        |
 *  | SIGNALS    | worker -> front  | mask (uint64: 1 << (sig - 1))        | -                        |
 *  | RAISE      | worker -> front  | signal                               | -                        |
 *  | REPLY      | front -> worker  | four int32 (per request, below)      | CLONE: the sync socket   |
 *  | EXIT       | worker -> front  | exit status                          | -                        |
 *
 * The commit token: the read end of a pipe holding one byte, which the front
 * end keeps too. The worker checks and adopts the caller's context, then takes
 * the byte (a non-blocking read: of two readers exactly one gets it), sends
 * ACCEPT and runs the command at once. A front end that had no ACCEPT in time
 * tries to take the byte itself: if it gets it, the worker cannot commit any
 * more and the front end runs the direct path; if not, the worker has
 * committed and the front end waits for it. So no round trip is needed to
 * agree. REFUSE (before the token) also sends the front end to the direct
 * path. The caller's own fds travel apart, in the fd channel (a socket pair
 * whose receiving end goes with the REQUEST and stays with the front end too):
 * a front end that takes the token back takes them back out of the channel, so
 * that no fd of the caller's (its stdout: someone may wait for its EOF) stays
 * in flight on a connection a late helper has yet to accept. Once committed,
 * every request the worker makes is answered by one REPLY:
 *   CLONE     rc, pid, used_clone3, step/err (ocirun_spawn/ocirun_exec's result;
 *             on success the parent's end of the sync socket comes with it)
 *   SPAWN     pid or -errno
 *   WAITPID   returned pid (or -errno), wait status
 *   SUBREAPER 0 or -errno
 *   SIGNALS, RAISE  0
 * The front end knows nothing of the sync protocol: the worker drives it. */
#ifndef OCIRUN_FRONTEND_PROTOCOL_H
#define OCIRUN_FRONTEND_PROTOCOL_H
#include <stdint.h>

#define OCIRUN_HELPER_PROTOCOL 2

enum ocirun_frame_type {
    OCIRUN_FRAME_REQUEST = 1,
    OCIRUN_FRAME_ACCEPT = 2,
    OCIRUN_FRAME_REFUSE = 3,
    OCIRUN_FRAME_FDS = 5,
    OCIRUN_FRAME_CLONE = 10,
    OCIRUN_FRAME_SPAWN = 11,
    OCIRUN_FRAME_WAITPID = 12,
    OCIRUN_FRAME_SUBREAPER = 13,
    OCIRUN_FRAME_SIGNALS = 14,
    OCIRUN_FRAME_RAISE = 15,
    OCIRUN_FRAME_REPLY = 20,
    OCIRUN_FRAME_EXIT = 21
};

struct ocirun_frame {
    uint32_t type;
    uint32_t nfds;     /* fds that came with this frame (SCM_RIGHTS) */
    uint64_t len;      /* payload bytes that follow */
};

/* REQUEST flags */
#define OCIRUN_REQUEST_HAS_TTY 1u

struct ocirun_request {
    uint32_t version;  /* OCIRUN_HELPER_PROTOCOL */
    uint32_t flags;
    uint32_t argc;
    uint32_t envc;
    uint32_t nfds;     /* the caller's fd table: int32 numbers follow, then argv, envp */
    uint32_t reserved;
};

/* CLONE kinds */
#define OCIRUN_CLONE_SPAWN 1   /* ocirun_spawn(plan, fifo, cgroup, &res) */
#define OCIRUN_CLONE_EXEC 2    /* ocirun_exec(plan, stdio, cgroup, &res) */

struct ocirun_clone {
    uint32_t kind;
    uint32_t n_relocs;     /* uint64 offsets of pointers in the arena */
    uint32_t n_fd_slots;   /* struct ocirun_fd_slot */
    int32_t floor;         /* received fds go at or above this (the preserved fds are below) */
    uint64_t base;         /* the arena's address in the worker */
    uint64_t arena_len;
    uint64_t plan_offset;  /* struct ocirun_plan in the arena */
    int32_t fifo;          /* index of the fd (in the frame's fds), or -1 */
    int32_t cgroup;
    int32_t stdio[3];
    int32_t reserved;
};

struct ocirun_fd_slot {
    uint64_t offset;       /* an int in the arena */
    int32_t index;         /* the fd to write there (index in the frame's fds) */
    int32_t reserved;
};

/* SPAWN: a runtime-namespace hook (os.posix_spawn's subset ocirun uses) */
#define OCIRUN_SPAWN_DUP2 1    /* dup2(fds[a], b) */
#define OCIRUN_SPAWN_CLOSE 2   /* close(a) */

struct ocirun_spawn {
    uint32_t n_actions;    /* struct ocirun_spawn_action */
    uint32_t argc;
    uint32_t envc;
    uint32_t reserved;
    uint64_t sigdef;       /* signals reset to SIG_DFL (1 << (sig - 1)) */
    /* then the actions, the path, argv, envp (NUL-terminated strings) */
};

struct ocirun_spawn_action {
    int32_t kind;
    int32_t a;
    int32_t b;
    int32_t reserved;
};

#endif
