"""Executors: run a command on this host, inside a network namespace, or on another host
over SSH, through one interface, so the lab, node bootstrap and the multi-node code need
not care where a command runs.

    ex = executor_for("ssh:root@198.18.0.21")          # or "local", "netns:tn-compute1"
    ex.run(["ip", "-o", "link"]).stdout                # CompletedProcess, text mode
    ex.run(["false"])                                   # ExecError: host, command, stderr
    p = ex.popen(["ping", "-c", "3", "10.0.0.2"], stdout=subprocess.PIPE, text=True)
    ns = NetnsExecutor("tn-v-web1", base=ex)            # a namespace on that host

Every executor has `run(cmd_list, check=True, timeout=60, input=None, env=None,
capture=True)`, `popen(cmd_list, **popen_kwargs)`, `wrap(cmd_list)` (the argv that runs
*cmd_list* there, for callers that spawn processes themselves) and `description`.
"""

import os
import shlex
import shutil
import subprocess
import tempfile
import weakref

from tenantnet.errors import TenantnetError

DEFAULT_SSH_OPTIONS = {
    "BatchMode": "yes",                 # never prompt: a missing key is an error, not a hang
    "ConnectTimeout": "10",
    "StrictHostKeyChecking": "accept-new",
    "ServerAliveInterval": "15",
    "ServerAliveCountMax": "3",
    "LogLevel": "ERROR",                # no "Warning: Permanently added ..." on stderr
}


class ExecError(TenantnetError):
    """A command failed, timed out or could not be started; str() names host and command."""

    def __init__(self, message, host="local", cmd=None, returncode=None, stderr=""):
        self.host = host
        self.cmd = list(cmd or [])
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(message)


def _failure(where, full, proc):
    err = (proc.stderr or proc.stdout or "").strip()
    return f"command failed ({proc.returncode}){where}: {' '.join(full)}: {err}"


class Executor:
    """Base class. Subclasses implement wrap() (argv that runs *cmd* there); run/popen
    then spawn that argv through the base executor (local for the outermost one)."""

    description = "?"
    base = None

    def wrap(self, cmd):
        raise NotImplementedError

    def _where(self):
        """' on HOST' for error messages; empty for this host (keeps lab messages short)."""
        return f" on {self.description}"

    def _spawn_env(self, env):
        return env

    def _default_stdin(self):
        """stdin of commands run without *input*: inherited locally (so `lab exec VM --
        bash` stays interactive), /dev/null over SSH (ssh must not swallow our stdin)."""
        return self.base._default_stdin() if self.base is not None else None

    def run(self, cmd, check=True, timeout=60, input=None, env=None, capture=True):
        """Run *cmd* (a list of strings) and return a text-mode CompletedProcess.

        check=True raises ExecError on a non-zero exit, carrying host, command and stderr.
        *env* is the command's whole environment as for subprocess (remotely: the variables
        that differ from this process's environment are passed with env(1))."""
        cmd = [str(c) for c in cmd]
        full = self.wrap(cmd)
        try:
            proc = subprocess.run(full, capture_output=capture, text=True, input=input,
                                  env=self._spawn_env(env), timeout=timeout,
                                  stdin=None if input is not None else self._default_stdin())
        except FileNotFoundError as exc:
            raise ExecError(f"command not found: {full[0]} (is it installed?)",
                            self.description, cmd) from exc
        except subprocess.TimeoutExpired as exc:
            raise ExecError(f"command timed out after {timeout}s{self._where()}: "
                            f"{' '.join(full)}", self.description, cmd) from exc
        if check and proc.returncode != 0:
            self._raise_failed(full, cmd, proc)
        return proc

    def _raise_failed(self, full, cmd, proc):
        raise ExecError(_failure(self._where(), full, proc), self.description, cmd,
                        proc.returncode, (proc.stderr or "").strip())

    def popen(self, cmd, **kwargs):
        """subprocess.Popen of *cmd* run there (kwargs as for Popen)."""
        full = self.wrap([str(c) for c in cmd])
        if "env" in kwargs:
            kwargs["env"] = self._spawn_env(kwargs["env"])
        if kwargs.get("stdin") is None and "input" not in kwargs:
            kwargs["stdin"] = self._default_stdin()
        try:
            return subprocess.Popen(full, **kwargs)
        except FileNotFoundError as exc:
            raise ExecError(f"command not found: {full[0]} (is it installed?)",
                            self.description, cmd) from exc

    # -- small conveniences used by bootstrap and the lab ------------------------------
    def ok(self, cmd, timeout=60):
        """True when *cmd* exits 0 (never raises for a non-zero exit)."""
        return self.run(cmd, check=False, timeout=timeout).returncode == 0

    def close(self):
        """Release resources (the SSH control connection); the executor stays usable."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<{type(self).__name__} {self.description}>"


class LocalExecutor(Executor):
    """This host, this network namespace."""

    description = "local"

    def wrap(self, cmd):
        return list(cmd)

    def _where(self):
        return ""


class NetnsExecutor(Executor):
    """Network namespace *netns* on the host of *base* (default: this host), via
    `ip netns exec`."""

    def __init__(self, netns, base=None):
        if not netns or "/" in netns:
            raise ExecError(f"bad network namespace name {netns!r}")
        self.netns = netns
        self.base = base or LocalExecutor()

    @property
    def description(self):
        if isinstance(self.base, LocalExecutor):
            return f"netns:{self.netns}"
        return f"netns:{self.netns} on {self.base.description}"

    def wrap(self, cmd):
        return self.base.wrap(["ip", "netns", "exec", self.netns, *cmd])

    def _where(self):
        # Local namespaces keep the lab's historical message format (the command already
        # names the namespace); remote ones name the host.
        return self.base._where()

    def _spawn_env(self, env):
        return self.base._spawn_env(env)

    def close(self):
        self.base.close()


class SshExecutor(Executor):
    """A host reached with the OpenSSH client.

    BatchMode (no prompts), ConnectTimeout, and a ControlMaster connection whose socket
    lives in a private directory (mode 0700) made for this executor, so that consecutive
    commands reuse one TCP/SSH session (a few ms each instead of a handshake). The remote
    command line is built with shlex.join, so arguments arrive exactly as given.
    *options*: extra or overriding `-o` options (dict). *base*: the executor that runs the
    ssh client itself (default: this host; e.g. a NetnsExecutor to reach a namespace's
    network)."""

    def __init__(self, host, user="root", port=22, identity=None, options=None, base=None,
                 control_persist=60):
        if not host:
            raise ExecError("ssh executor: no host given")
        self.host = host
        self.user = user
        self.port = int(port)
        self.identity = identity
        self.base = base or LocalExecutor()
        self.options = dict(DEFAULT_SSH_OPTIONS)
        self.options.update({k: str(v) for k, v in (options or {}).items()})
        self.control_persist = control_persist
        self._control_dir = None
        self._finalizer = None

    @property
    def target(self):
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def description(self):
        suffix = "" if self.port == 22 else f":{self.port}"
        return f"{self.target}{suffix}"

    def _control_path(self):
        if self._control_dir is None:
            # Short path: sun_path holds 108 bytes and %C expands to 40 hex digits.
            self._control_dir = tempfile.mkdtemp(prefix="tn-ssh-", dir="/tmp")
            os.chmod(self._control_dir, 0o700)
            self._finalizer = weakref.finalize(self, _close_master, self._ssh_base(False),
                                               self._control_dir, self.base)
        return os.path.join(self._control_dir, "%C")

    def _ssh_base(self, with_control=True):
        argv = ["ssh", "-p", str(self.port)]
        if self.identity:
            argv += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        for key, value in self.options.items():
            argv += ["-o", f"{key}={value}"]
        if with_control and self.control_persist is not None:
            argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_path()}",
                     "-o", f"ControlPersist={self.control_persist}"]
        return argv

    def wrap(self, cmd):
        return self.base.wrap([*self._ssh_base(), self.target, "--", shlex.join(cmd)])

    def _spawn_env(self, env):
        return None                         # the local ssh client runs in our environment

    def _default_stdin(self):
        return subprocess.DEVNULL

    def _remote_env_prefix(self, env):
        if env is None:
            return []
        changed = [f"{k}={v}" for k, v in sorted(env.items()) if os.environ.get(k) != v]
        return ["env", *changed] if changed else []

    def run(self, cmd, check=True, timeout=60, input=None, env=None, capture=True):
        cmd = [str(c) for c in cmd]
        proc = super().run(self._remote_env_prefix(env) + cmd, check=False, timeout=timeout,
                           input=input, capture=capture)
        if proc.returncode == 255:
            # ssh's own failure (unreachable, refused, key not accepted): say so plainly.
            err = (proc.stderr or "").strip()
            raise ExecError(f"ssh to {self.description} failed: {err or 'exit status 255'} "
                            f"(running: {shlex.join(cmd)})", self.description, cmd, 255, err)
        if check and proc.returncode != 0:
            self._raise_failed(self.wrap(cmd), cmd, proc)
        return proc

    def _raise_failed(self, full, cmd, proc):
        err = (proc.stderr or proc.stdout or "").strip()
        raise ExecError(f"command failed ({proc.returncode}) on {self.description}: "
                        f"{shlex.join(cmd)}: {err}", self.description, cmd, proc.returncode,
                        (proc.stderr or "").strip())

    def popen(self, cmd, **kwargs):
        env = kwargs.pop("env", None)
        return super().popen(self._remote_env_prefix(env) + [str(c) for c in cmd], **kwargs)

    def close(self):
        """Stop the control master and remove its private directory."""
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._control_dir = None


def _close_master(ssh_argv, control_dir, base):
    path = os.path.join(control_dir, "%C")
    try:
        subprocess.run(base.wrap([*ssh_argv, "-o", f"ControlPath={path}", "-O", "exit",
                                  "dummy"]), capture_output=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        pass
    shutil.rmtree(control_dir, ignore_errors=True)


def parse_ssh_target(text):
    """'user@host:port' / 'user@host' / 'host' / 'user@[v6addr]:port' -> (user, host, port)."""
    user = None
    rest = text
    if "@" in rest:
        user, rest = rest.rsplit("@", 1)
        if not user:
            raise ExecError(f"ssh target {text!r}: empty user name")
    port = 22
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep:
            raise ExecError(f"ssh target {text!r}: missing ']'")
        if tail:
            if not tail.startswith(":"):
                raise ExecError(f"ssh target {text!r}: expected ':PORT' after ']'")
            port = tail[1:]
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:
        host = rest
    if not host:
        raise ExecError(f"ssh target {text!r}: no host")
    try:
        port = int(port)
        if not 1 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise ExecError(f"ssh target {text!r}: port must be 1..65535") from None
    return user, host, port


def executor_for(spec, **ssh_kwargs):
    """An executor from a spec string (an Executor is returned as it is):

        local                   this host
        netns:NAME              a network namespace on this host
        ssh:[USER@]HOST[:PORT]  another host (USER defaults to root)

    *ssh_kwargs* (identity=, options=, base=) go to SshExecutor."""
    if isinstance(spec, Executor):
        return spec
    spec = (spec or "").strip()
    if spec == "local":
        return LocalExecutor()
    kind, sep, arg = spec.partition(":")
    if sep and kind == "netns":
        return NetnsExecutor(arg)
    if sep and kind == "ssh":
        user, host, port = parse_ssh_target(arg)
        return SshExecutor(host, user=user or "root", port=port, **ssh_kwargs)
    raise ExecError(f"executor {spec!r}: expected 'local', 'netns:NAME' or "
                    "'ssh:[USER@]HOST[:PORT]'")
