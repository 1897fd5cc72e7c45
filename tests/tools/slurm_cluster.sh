#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tests/test_slurm.py: Debian's slurmctld, slurmd, slurm-client
# and munge, with every key, configuration, state, log and socket under one directory this script owns.
#
#   tests/tools/slurm_cluster.sh start DIR    install what is missing, write DIR, start munged, slurmctld and
#                                             slurmd, wait until the node is idle; prints key=value lines
#   tests/tools/slurm_cluster.sh status DIR   the daemons and the node; exit 0 when the cluster answers
#   tests/tools/slurm_cluster.sh stop DIR     cancel its jobs, stop the daemons started from DIR, remove DIR
#
# Clients reach the cluster with SLURM_CONF=DIR/etc/slurm.conf, or through the wrappers in DIR/bin (start
# prints both): the Slurm executor plugin's job step removes every SLURM_* variable, SLURM_CONF included, before
# it calls srun inside a job, so a job finds this cluster only through a PATH that starts with DIR/bin.
# The node has this machine's CPUs and a little less than its memory; one partition (cca); no accounting
# database: finished jobs stay in slurmctld's memory for a day (MinJobAge), where `scontrol show job` and
# `squeue --states=all` read what each job asked for (sacct needs slurmdbd and a database: not set up here).
#
# Root is needed only to install the packages: the daemons run as the calling user, whose jobs are the only
# ones a slurmd that is not root can start.
#
# Exit codes: 0 done; 2 usage; 3 Slurm or munge is missing and cannot be installed (needs root and apt-get);
# 4 installed but the cluster did not come up (the reason and the end of the daemon's log are printed).
# Environment: CCA_SLURM_PORT, the first TCP port tried for slurmctld (slurmd takes the next one; default 6817).
set -u

PARTITION=cca
CLUSTER=cca
PACKAGES=(slurmctld slurmd slurm-client munge)
COMMANDS=(munged mungekey slurmctld slurmd sinfo sbatch srun squeue scontrol scancel)
STARTING=   # set once start has made DIR: from then on a failure stops what it started
CLIENTS=(sbatch srun salloc squeue scontrol scancel sinfo sacct sacctmgr sshare)   # wrapped in DIR/bin

usage() {
  echo "usage: $0 start|status|stop DIR" >&2
  exit 2
}

[ $# -eq 2 ] || usage
ACTION=$1
DIR=$2
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
CONF="$DIR/etc/slurm.conf"
MARKER="$DIR/.cca-slurm-cluster"
PATH="$PATH:/usr/sbin:/sbin"

fail() {   # fail CODE MESSAGE [LOG]: the reason on stdout (the test shows it), the log's last lines; a start that
  #          fails stops the daemons it had started and leaves DIR with their logs (stop removes it)
  echo "$2"
  if [ $# -ge 3 ] && [ -s "$3" ]; then
    echo "--- last lines of $3:"
    tail -n 15 "$3"
  fi
  if [ -n "$STARTING" ] && [ "$BASHPID" = "$$" ]; then
    stop_daemons
  fi
  exit "$1"
}

missing_commands() {
  local c out=()
  for c in "${COMMANDS[@]}"; do command -v "$c" >/dev/null 2>&1 || out+=("$c"); done
  echo "${out[*]:-}"
}

install_packages() {
  local missing
  missing=$(missing_commands)
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    fail 3 "Slurm is not installed (missing: $missing) and cannot be: installing needs root and apt-get\
 (apt-get install ${PACKAGES[*]})"
  fi
  echo "installing ${PACKAGES[*]} (Debian packages) for the Slurm test" >&2
  # The packages' maintainer scripts would start the system's munge and Slurm services; a policy-rc.d that
  # refuses every start keeps them stopped (one already there is left as it is).
  local policy=/usr/sbin/policy-rc.d added=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added=1
  fi
  local log rc
  log=$(mktemp)
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"; } >"$log" 2>&1
  rc=$?
  [ -n "$added" ] && rm -f "$policy"
  if [ $rc -ne 0 ]; then
    tail -n 5 "$log"
    rm -f "$log"
    fail 3 "apt-get could not install ${PACKAGES[*]} (exit $rc)"
  fi
  rm -f "$log"
  missing=$(missing_commands)
  [ -z "$missing" ] || fail 3 "installed ${PACKAGES[*]}, but still missing: $missing"
}

port_in_use() {   # something answers on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port_pair() {
  local p=${CCA_SLURM_PORT:-6817} tries=0
  while port_in_use "$p" || port_in_use $((p + 1)); do
    p=$((p + 2))
    tries=$((tries + 1))
    [ $tries -lt 50 ] || fail 4 "no free pair of TCP ports from ${CCA_SLURM_PORT:-6817} on"
  done
  echo "$p"
}

pid_of() {   # pid_of NAME: the pid in DIR/run/NAME.pid if that process is alive and was started with DIR
  local file="$DIR/run/$1.pid" pid
  [ -s "$file" ] || return 1
  pid=$(cat "$file")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$DIR/" || return 1
  echo "$pid"
}

write_config() {
  local host node port real mem topology
  host=$(hostname -s)
  # slurmd -C: "NodeName=<host> CPUs=.. Boards=.. SocketsPerBoard=.. CoresPerSocket=.. ThreadsPerCore=.. RealMemory=.."
  node=$(slurmd -C 2>/dev/null | head -n 1)
  real=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  topology=$(tr ' ' '\n' <<<"$node" | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' |
    tr '\n' ' ')
  { [ -n "$real" ] && [ -n "$topology" ]; } || fail 4 "slurmd -C did not describe this machine: '$node'"
  # slurmd drains a node that has less memory than slurm.conf says: declare 95% of it
  mem=$((real * 95 / 100))
  port=$(free_port_pair) || exit 4
  cat >"$CONF" <<EOF
# Written by tests/tools/slurm_cluster.sh: one node, this machine, everything under $DIR.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state/slurmctld
SlurmdSpoolDir=$DIR/state/slurmd
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
ReturnToService=2
# finished jobs stay readable (scontrol show job, squeue --states=all) for a day
MinJobAge=86400
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 ${topology}RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  echo "$mem"
}

node_state() {
  SLURM_CONF="$CONF" timeout 10 sinfo -h -N -p "$PARTITION" -o %T 2>/dev/null | head -n 1
}

start() {
  install_packages
  if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    [ -e "$MARKER" ] && fail 4 "a cluster from $DIR may still run: $0 stop $DIR first"
    fail 4 "$DIR exists and is not empty: give start a new or empty directory"
  fi
  mkdir -p "$DIR" || fail 4 "cannot create $DIR"
  touch "$MARKER"
  STARTING=1
  mkdir -p "$DIR"/{bin,etc,munge,run,log,state/slurmctld,state/slurmd} || fail 4 "cannot write under $DIR"
  chmod 700 "$DIR/munge"

  # munge: a fresh key, its own socket (the system's munged, if any, is not used)
  mungekey --create --keyfile="$DIR/munge/munge.key" >/dev/null 2>&1 ||
    { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none; }
  chmod 400 "$DIR/munge/munge.key"
  munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
    </dev/null >>"$DIR/log/munged.log" 2>&1 || fail 4 "munged did not start" "$DIR/log/munged.log"

  local mem
  mem=$(write_config) || fail 4 "$mem"
  # the daemons fork and keep no descriptor of the caller's (a test reading this script's output would wait)
  slurmctld -f "$CONF" -c </dev/null >>"$DIR/log/slurmctld.out" 2>&1 ||
    fail 4 "slurmctld did not start" "$DIR/log/slurmctld.log"
  slurmd -f "$CONF" -c </dev/null >>"$DIR/log/slurmd.out" 2>&1 || fail 4 "slurmd did not start" "$DIR/log/slurmd.log"

  local c real
  for c in "${CLIENTS[@]}"; do
    real=$(command -v "$c") || continue
    printf '#!/bin/sh\n# %s of the Slurm cluster in %s (tests/tools/slurm_cluster.sh)\nSLURM_CONF=%q exec %q "$@"\n' \
      "$c" "$DIR" "$CONF" "$real" >"$DIR/bin/$c"
    chmod 755 "$DIR/bin/$c"
  done

  local state='' i
  for i in $(seq 1 60); do
    state=$(node_state)
    [ "$state" = idle ] && break   # "idle*" is a node that does not answer
    if [ "$i" -gt 5 ] && ! pid_of slurmctld >/dev/null; then
      fail 4 "slurmctld stopped" "$DIR/log/slurmctld.log"
    fi
    if [ "$i" -gt 5 ] && ! pid_of slurmd >/dev/null; then
      fail 4 "slurmd stopped" "$DIR/log/slurmd.log"
    fi
    sleep 1
  done
  [ "$state" = idle ] || fail 4 "the node is not idle after 60 s (state '${state:-none}'; \
$(SLURM_CONF="$CONF" sinfo -h -R 2>/dev/null))" "$DIR/log/slurmd.log"
  echo "SLURM_CONF=$CONF"
  echo "bin=$DIR/bin"
  echo "partition=$PARTITION"
  echo "cpus=$(SLURM_CONF="$CONF" sinfo -h -N -o %c | head -n 1)"
  echo "mem_mb=$mem"
  echo "version=$(SLURM_CONF="$CONF" sinfo -V | awk '{print $2}')"
}

status() {
  [ -e "$MARKER" ] || { echo "no cluster in $DIR"; exit 1; }
  local name rc=0
  for name in munged slurmctld slurmd; do
    if pid=$(pid_of $name); then echo "$name: running (pid $pid)"; else echo "$name: not running"; rc=1; fi
  done
  SLURM_CONF="$CONF" timeout 10 sinfo -N -l || rc=1
  SLURM_CONF="$CONF" timeout 10 squeue || rc=1
  exit $rc
}

stop_daemons() {   # the daemons started from DIR, then any job step of this cluster that outlived slurmd
  local name pid i
  for name in slurmd slurmctld munged; do
    pid=$(pid_of $name) || continue
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  # a job's slurmstepd carries this cluster's SLURM_CONF in its environment
  for pid in $(pgrep -x slurmstepd 2>/dev/null); do
    tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF "SLURM_CONF=$CONF" && kill -KILL "$pid" 2>/dev/null
  done
}

stop() {
  [ -e "$MARKER" ] || { echo "no cluster in $DIR (nothing to stop)"; exit 0; }
  local name pid i
  if pid_of slurmctld >/dev/null; then
    SLURM_CONF="$CONF" timeout 10 scancel --full --user="$(id -un)" >/dev/null 2>&1
    for i in $(seq 1 30); do
      [ -z "$(SLURM_CONF="$CONF" timeout 10 squeue -h -t RUNNING,COMPLETING,PENDING 2>/dev/null)" ] && break
      sleep 1
    done
  fi
  stop_daemons
  rm -rf "$DIR"
  echo "stopped the cluster of $DIR"
}

case "$ACTION" in
  start) start ;;
  status) status ;;
  stop) stop ;;
  *) usage ;;
esac
