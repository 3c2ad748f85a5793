// Child processes: short commands with captured output and a deadline (qemu-img, lvm2, ip),
// and long-running children (QEMU, dnsmasq) whose exit is reported asynchronously.
//
// Reaping: the daemon is a child subreaper and enables the ChildReaper, which reaps every
// child on SIGCHLD and hands each exit status to whoever waits for that pid. Without it
// (tools, unit tests) waits use waitpid() on the pid directly.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/private_root.h"
#include "base/result.h"
#include "base/time_util.h"

namespace vmm {

// What a child may do, applied between fork() and exec(): the default (nothing set) leaves it
// root with every capability, as vmmd is. For programs that read untrusted bytes (qemu-img on
// an imported image, a customisation helper) and, later, for QEMU itself. A step that fails
// ends the start with an error naming it; the program never runs half-confined.
struct Confinement {
  // Both or neither: the child gets exactly this uid and gid and no supplementary groups. A
  // uid other than 0 drops every capability (they are not kept across setresuid).
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  // Supplementary groups given with the gid (e.g. kvm for /dev/kvm); none by default.
  std::vector<gid_t> groups;
  // PR_SET_NO_NEW_PRIVS: no setuid bit or file capability of any later exec gives anything back.
  bool noNewPrivileges = false;
  // A user namespace of its own in which it is uid and gid 0 - on the host the id given here
  // (userNamespaceShowingRootAs) - instead of `uid` and `gid`: a program that states its ids to
  // a server (NFS's AUTH_SYS sends getuid()) speaks as root there while it owns nothing of the
  // host and holds no capability over anything the host's namespaces own. Its capabilities in
  // that namespace are dropped for good as well: empty bounding, permitted, effective,
  // inheritable and ambient sets, and locked securebits so no exec as its root gives them back.
  std::optional<uint32_t> rootShownAs;
  // A network namespace of its own: only a loopback that is down, no route anywhere.
  bool newNetworkNamespace = false;
  // A pid namespace of its own, the child its init (pid 1): it sees and signals no other
  // process, and with `root` its /proc shows only its own. It outlives nothing it starts.
  bool newPidNamespace = false;
  // setrlimit() soft and hard values, e.g. {RLIMIT_AS, 1 << 30}, {RLIMIT_CPU, 30}.
  std::vector<std::pair<int, uint64_t>> limits;
  // A mount namespace whose root holds only what this names (base/private_root.h); its cwd
  // replaces the spawn's.
  std::optional<PrivateRoot> root;

  bool empty() const { return !uid && !gid && !rootShownAs && groups.empty() && !root && !noNewPrivileges && !newNetworkNamespace && !newPidNamespace &&
                                   limits.empty(); }
};

struct RunOptions {
  Deadline deadline = Deadline::after(Millis(60000));
  std::string stdinData;
  size_t maxOutput = 16 << 20;                   // per stream; the rest is discarded
  std::map<std::string, std::string> env;       // added to / overriding the inherited environment
  bool clearEnv = false;                        // start from an empty environment (PATH kept)
  std::string cwd;                              // changed to after the confinement (as its uid)
  Confinement confinement;
};

struct CommandResult {
  int exitCode = -1;   // -1 if killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
  bool success() const { return exitCode == 0; }
  // "exit status 3: <first line of stderr>" for error messages.
  std::string describe() const;
};

// Where argv[0] of a child is found when it has no '/': the child's PATH, then /usr/local/sbin,
// /usr/sbin and /sbin. System tools (nft, tc, dnsmasq, lvm, tgtadm) live there and a daemon's
// or a CI user's PATH may lack them. Empty when not found.
std::string findExecutable(const std::string& name, const char* path = nullptr);

// Both runCommand forms and runChecked go through commandRunner() (base/command_runner.h), so
// a test can record their command lines instead of running them.
// Runs argv[0] (looked up as findExecutable does) to completion. Errors only when it cannot be started or
// the deadline passes (the child is then killed); a non-zero exit is a successful Result.
Result<CommandResult> runCommand(const std::vector<std::string>& argv, const RunOptions& options = {});
// The common case: a deadline and, optionally, standard input.
Result<CommandResult> runCommand(const std::vector<std::string>& argv, Deadline deadline, std::string stdinData = {});
// runCommand + non-zero exit turned into an error naming the command.
Result<CommandResult> runChecked(const std::vector<std::string>& argv, const RunOptions& options = {});

struct SpawnOptions {
  std::vector<int> passFds;   // placed at fd 3, 4, ... in the child, in this order
  int stdinFd = -1;           // -1: /dev/null
  int stdoutFd = -1;          // -1: /dev/null
  int stderrFd = -1;          // -1: same as stdout
  bool newSession = true;     // setsid(): not killed with vmmd's process group
  std::map<std::string, std::string> env;
  std::string cwd;                            // changed to after the confinement (as its uid)
  // ... or before it, as root: the child then works in a directory its uid owns but could not
  // reach by path (its parents are private), with relative names.
  bool cwdBeforeConfinement = false;
  Confinement confinement;
};

Result<pid_t> spawnProcess(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// Process-wide reaper (see the header comment). Thread-safe.
class ChildReaper {
 public:
  // Called once by the daemon after blocking SIGCHLD in every thread.
  static void enable();
  static bool enabled();
  // Reaps every exited child and dispatches statuses; call on SIGCHLD.
  static void reapAll();
  // Waits for `pid` to exit and returns its wait status.
  static Result<int> wait(pid_t pid, Deadline deadline);
  // Calls fn(waitStatus) once `pid` exits (from the reaping thread). Only for children.
  static void onExit(pid_t pid, std::function<void(int)> fn);
  // fork() for every child vmmd makes: no status of an earlier process with the same pid is
  // ever reported for the new one (process.cc says how). In the child, only async-signal-safe
  // calls may follow, as after any fork() in a threaded program.
  // `cloneFlags` (e.g. CLONE_NEWPID) make it a clone() with those namespaces, fork() otherwise;
  // glibc's fork handlers do not run then, which changes nothing for a child that only execs.
  static pid_t fork(int cloneFlags = 0);
};

// Human description of a wait status: "exited with status 1", "killed by signal 9".
std::string describeWaitStatus(int status);
bool processAlive(pid_t pid);
// Alive and not a zombie (an exited child that nobody reaped yet).
bool processRunning(pid_t pid);
// Start time of a process (field 22 of /proc/PID/stat), to tell a reused pid from the original.
std::optional<uint64_t> processStartTime(pid_t pid);
std::optional<pid_t> processParent(pid_t pid);
// The session id of a process (field 6 of /proc/PID/stat).
std::optional<pid_t> processSession(pid_t pid);
// The processes of session `sid` that have not exited (zombies left out), from /proc.
std::vector<pid_t> sessionMembers(pid_t sid);

}  // namespace vmm
