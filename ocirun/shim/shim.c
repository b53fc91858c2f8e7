/* ocirun's C shim: clone the container init and run a resolved LaunchPlan.
 *
 * Python decides, C does. ocirun.shim.spawn() turns the LaunchPlan into the
 * structs of shim_cdef.h, then calls ocirun_spawn(), which clones "stage-1".
 * From there on the children run only this file: async-signal-safe calls,
 * raw syscalls where glibc would take locks or talk to other threads (the
 * set*id family), no malloc, stack buffers only, and they never return into
 * Python: every path ends in execve() or _exit(). Failures travel back to the
 * parent as (step, errno, index); Python names the step.
 *
 * Process shape (runc's nsexec, simplified):
 *
 *   parent (Python) --clone3--> stage-1 --clone(CLONE_PARENT)--> init
 *
 * stage-1 joins/creates the namespaces, then creates the init as a sibling
 * (the parent's child, pid 1 of a new pid namespace) and exits. The init sets
 * up the rootfs and the process, reports READY and blocks on the exec fifo.
 *
 * Sync protocol: one SOCK_SEQPACKET socketpair, one struct ocirun_msg per
 * packet. Only one child reads at a time (stage-1 until it sends INIT_PID,
 * then the init), so one socket serves both.
 *
 *  | message           | direction        | payload        | meaning                                       |
 *  |-------------------|------------------|----------------|-----------------------------------------------|
 *  | CGROUP_PLACED     | parent -> stage1 | -              | stage-1 is in its cgroups; go on and join/    |
 *  |                   |                  |                | create namespaces (cgroup ns is rooted here)  |
 *  | NS_READY          | stage1 -> parent | -              | namespaces joined/created; parent writes      |
 *  |                   |                  |                | uid_map/gid_map/timens_offsets, runs its hook |
 *  | NS_ACK            | parent -> stage1 | -              | maps written; become root in the user ns and  |
 *  |                   |                  |                | clone the init                                |
 *  | INIT_PID          | stage1 -> parent | pid            | init created (pid in the parent's pid ns);    |
 *  |                   |                  |                | stage-1 exits, the parent reaps it            |
 *  | INIT_ACK          | parent -> init   | -              | parent knows the init (oom_score_adj written);|
 *  |                   |                  |                | the init may start (and may fail) now         |
 *  | BEFORE_PIVOT      | init -> parent   | -              | mounts done, before pivot_root (only if       |
 *  |                   |                  |                | sync_before_pivot): parent runs hooks         |
 *  | BEFORE_PIVOT_ACK  | parent -> init   | -              | hooks done; pivot                             |
 *  | READY             | init -> parent   | -              | setup done; the parent saves state.json       |
 *  | COMMIT            | parent -> init   | -              | the container exists now: the init disarms    |
 *  |                   |                  |                | its parent-death signal, closes its end (the  |
 *  |                   |                  |                | EOF tells the parent, which then returns) and |
 *  |                   |                  |                | blocks on the exec fifo                       |
 *  | ERROR             | child -> parent  | step,err,index | a step failed; the child exits; the parent    |
 *  |                   |                  |                | kills and reaps every child and raises        |
 *  | SECCOMP_FD        | init -> parent   | fd (SCM_RIGHTS)| filter loaded with NEW_LISTENER (SCMP_ACT_    |
 *  |                   |                  |                | NOTIFY): the parent hands the fd and the state|
 *  |                   |                  |                | to listenerPath, before READY. A filter that  |
 *  |                   |                  | or index = fd  | refuses sendmsg: the fd's number instead, the |
 *  |                   |                  |                | parent takes it with pidfd_getfd              |
 *  | SECCOMP_ACK       | parent -> init   | -              | the agent has the fd; go on                   |
 *  | CONSOLE_FD        | init -> parent   | fd (SCM_RIGHTS)| process.terminal: the pty master, made in the |
 *  |                   |                  |                | container's devpts (src/console.c); the parent|
 *  |                   |                  |                | sends it to --console-socket or proxies it    |
 *  | EXEC_PID, EXEC_ACK| (exec only)      |                | see src/exec.c                                |
 *
 * EOF on the parent's end before READY means a child died without saying
 * why (killed); the parent reports the last message it got. Until COMMIT,
 * stage-1 and the init die with the parent (PR_SET_PDEATHSIG, armed again
 * after each change of ids; and the EOF at their next wait), so a killed
 * `ocirun create` leaves no process behind.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

/* Unity build: the steps live in src/, one file per job, included in
 * dependency order so every helper stays static and the compiler sees one
 * translation unit (cffi's set_source compiles this file). */
#include "src/common.c"
#include "src/selffd.c"
#include "src/namespaces.c"
#include "src/idmap.c"
#include "src/copyup.c"
#include "src/rootfs.c"
#include "src/process.c"
#include "src/process_attrs.c"
#include "src/console.c"
#include "src/init.c"
#include "src/spawn.c"
#include "src/exec.c"
