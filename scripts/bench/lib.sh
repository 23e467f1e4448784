# Shell helpers shared by scripts/run-benchmarks.sh and scripts/soak.sh:
# ports, process facts read from /proc, the open-files limit and the machine
# description. Sourced, never run. Everything stays on 127.0.0.1.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

wait_port() {  # $1 port: waits up to 5 s for it to accept
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 did not open" >&2; return 1
}

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
threads() { ls "/proc/$1/task" 2>/dev/null | wc -l; }

# CPU time (user + system) of the given pids, in clock ticks.
cpu_ticks() {
  local t=0 p v
  for p in "$@"; do
    v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + v))
  done
  echo "$t"
}

# Nanoseconds the threads of the given pids have spent runnable but waiting
# for a CPU (the second field of /proc/PID/task/TID/schedstat).
run_delay_ns() {
  local t=0 p f v
  for p in "$@"; do
    for f in /proc/"$p"/task/*/schedstat; do
      v=$(awk '{print $2}' "$f" 2>/dev/null || echo 0)
      t=$((t + v))
    done
  done
  echo "$t"
}

# Raises the open-files limit as far as allowed; fails with a clear message
# when it stays below $1.
raise_nofile() {
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$1" ]; then
    echo "open-files limit is $(ulimit -n) (hard $(ulimit -Hn)); $1 are needed. Run as a user allowed 'ulimit -n $1'." >&2
    return 1
  fi
}

# The machine, for machine.txt.
describe_machine() {  # $1 stamp
  echo "date_utc: $1"
  echo "git: $(git rev-parse HEAD 2>/dev/null || echo none)"
  echo "cpu: $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ //')"
  echo "cores: $(nproc)"
  echo "memory: $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
  echo "kernel: $(uname -r)"
  echo "loadavg_at_start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "nofile: $(ulimit -n)"
  echo "rustc: $(rustc --version 2>/dev/null || echo none)"
}
