#!/usr/bin/env bash
# A two-node SLURM cluster on this machine, to try divlab's SLURM path (docs/scale/slurm.md) and to test it
# (tests/test_slurm_cluster.py). Needs root (apt-get, the daemons run as root: SlurmUser=root).
#
#   bash scripts/slurm_local.sh up       # install slurm-wlm and munge if missing; start munge, slurmctld and
#                                        #   two slurmd node daemons (n1, n2); wait until sinfo shows them idle
#   bash scripts/slurm_local.sh status   # the daemons this script started, and sinfo
#   bash scripts/slurm_local.sh down     # stop only the daemons this script started (their pid files), undo
#                                        #   its /etc/hosts and /etc/slurm/slurm.conf additions
#
# Everything it writes lives in $DIVLAB_SLURM_DIR (default /tmp/divlab-slurm): slurm.conf, state, spools, logs
# and pid files. sbatch/srun/sinfo read /etc/slurm/slurm.conf, which `up` links to that slurm.conf when there is
# none (else run `export SLURM_CONF=$DIVLAB_SLURM_DIR/slurm.conf`). Node names must resolve for the rendezvous
# (Lightning's SLURMEnvironment takes MASTER_ADDR from the first name of SLURM_NODELIST): `up` adds the names
# that do not resolve to /etc/hosts, on a line it marks and `down` removes.
set -euo pipefail

DIR=${DIVLAB_SLURM_DIR:-${TMPDIR:-/tmp}/divlab-slurm}
NODES=(n1 n2)
CPUS_PER_NODE=${DIVLAB_SLURM_CPUS:-2}
CTLD_PORT=${DIVLAB_SLURM_PORT:-6817}  # slurmctld; the node daemons listen on the next ports
HOSTS_MARK="# divlab scripts/slurm_local.sh"
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF

say() { echo "slurm_local: $*" >&2; }

alive() {  # pid file → the pid, when that process is running
    local pid
    [[ -f $1 ]] && pid=$(cat "$1" 2>/dev/null) && [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

install_if_missing() {
    local missing=()
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null ||
        missing+=(slurm-wlm)
    command -v munged >/dev/null || missing+=(munge)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || { say "not root: cannot install ${missing[*]} (apt-get install -y ${missing[*]})"; exit 2; }
    command -v apt-get >/dev/null || { say "no apt-get: install ${missing[*]} by hand"; exit 2; }
    say "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_works; then
        say "munge already running (not started here, not stopped by down)"
        return
    fi
    [[ -s /etc/munge/munge.key ]] || { mungekey --create 2>/dev/null || create-munge-key -f; }
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 "$DIR/munge"  # munged runs as munge: its pid file lives here
    runuser -u munge -- munged --pid-file="$DIR/munge/munged.pid"
    for _ in $(seq 50); do munge_works && return; sleep 0.1; done
    say "munged did not start"; exit 1
}

write_conf() {
    local port=$CTLD_PORT node i=0
    mkdir -p "$DIR/state" "$DIR/log"
    {
        echo "# written by scripts/slurm_local.sh up: a two-node CPU cluster on one host"
        echo "ClusterName=divlab-local"
        echo "SlurmctldHost=$(hostname -s)"
        echo "SlurmctldPort=$CTLD_PORT"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "AuthType=auth/munge"
        echo "CredType=cred/munge"
        echo "StateSaveLocation=$DIR/state"
        echo "SlurmdSpoolDir=$DIR/spool-%n"
        echo "SlurmctldPidFile=$DIR/slurmctld.pid"
        echo "SlurmdPidFile=$DIR/slurmd-%n.pid"
        echo "SlurmctldLogFile=$DIR/log/slurmctld.log"
        echo "SlurmdLogFile=$DIR/log/slurmd-%n.log"
        echo "ProctrackType=proctrack/linuxproc"  # no cgroups in a container
        echo "TaskPlugin=task/none"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_CPU"
        echo "SchedulerType=sched/backfill"
        echo "SlurmdParameters=config_overrides"  # two nodes share this host's CPUs
        echo "ReturnToService=2"
        echo "MpiDefault=none"
        echo "SwitchType=switch/none"
        echo "AccountingStorageType=accounting_storage/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "JobCompType=jobcomp/none"
        echo "SchedulerParameters=sched_interval=2"
        echo "AuthInfo=cred_expire=10"    # a requeued job waits this long before it starts again (default 120 s)
        echo "MessageTimeout=30"
        echo "KillWait=15"           # SIGTERM → SIGKILL: the time a job has to checkpoint when cancelled or requeued
        echo "MinJobAge=600"         # keep finished jobs visible to squeue/scontrol (and submitit) for 10 min
        echo "InactiveLimit=0"
        echo "SlurmdTimeout=60"
        for node in "${NODES[@]}"; do
            i=$((i + 1))
            echo "NodeName=$node NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((port + i)) CPUs=$CPUS_PER_NODE State=UNKNOWN"
        done
        echo "PartitionName=debug Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP"
    } >"$CONF"
}

add_hosts() {
    local missing=() node
    for node in "${NODES[@]}"; do getent hosts "$node" >/dev/null || missing+=("$node"); done
    [[ ${#missing[@]} -eq 0 ]] && return
    echo "127.0.0.1 ${missing[*]} $HOSTS_MARK" >>/etc/hosts
    say "added ${missing[*]} to /etc/hosts (removed by down)"
}

remove_hosts() {
    grep -qF "$HOSTS_MARK" /etc/hosts 2>/dev/null || return 0
    local kept
    kept=$(grep -vF "$HOSTS_MARK" /etc/hosts)
    printf '%s\n' "$kept" >/etc/hosts  # in place: /etc/hosts may be a bind mount that cannot be replaced
}

link_conf() {
    if [[ ! -e /etc/slurm/slurm.conf ]]; then
        mkdir -p /etc/slurm && ln -s "$CONF" /etc/slurm/slurm.conf
    elif [[ $(readlink -f /etc/slurm/slurm.conf) != "$(readlink -f "$CONF")" ]]; then
        say "/etc/slurm/slurm.conf is another cluster's: export SLURM_CONF=$CONF before sbatch/srun/sinfo"
    fi
}

unlink_conf() {
    if [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$CONF" ]]; then
        rm -f /etc/slurm/slurm.conf
    fi
}

wait_idle() {
    local state
    for _ in $(seq 120); do
        state=$(sinfo -h -N -o '%N %t' 2>/dev/null | sort -u)
        if [[ $(grep -c ' idle$' <<<"$state") -eq ${#NODES[@]} ]]; then
            say "cluster up: ${NODES[*]} idle ($CPUS_PER_NODE CPUs each); SLURM_CONF=$CONF"
            return
        fi
        sleep 0.5
    done
    say "nodes not idle after 60 s: $(tr '\n' ' ' <<<"$state"); logs in $DIR/log"
    exit 1
}

up() {
    [[ $(id -u) -eq 0 ]] || { say "needs root (the daemons run as root)"; exit 2; }
    install_if_missing
    mkdir -p "$DIR"
    if [[ -n $(alive "$DIR/slurmctld.pid") ]]; then
        say "already up (slurmctld pid $(cat "$DIR/slurmctld.pid"))"
        wait_idle
        return
    fi
    write_conf
    add_hosts
    link_conf
    start_munge
    slurmctld -f "$CONF" -i  # -i: ignore state left by an earlier cluster in this directory
    for _ in $(seq 100); do [[ -n $(alive "$DIR/slurmctld.pid") ]] && break; sleep 0.1; done
    local node
    for node in "${NODES[@]}"; do
        mkdir -p "$DIR/spool-$node"
        slurmd -f "$CONF" -N "$node"
    done
    wait_idle
}

stop_pid_file() {  # SIGTERM the daemon of a pid file, wait for it, then remove the file
    local pid
    pid=$(alive "$1") || { rm -f "$1"; return 0; }
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then say "$1: pid $pid still running after 10 s: SIGKILL"; kill -9 "$pid"; fi
    rm -f "$1"
}

down() {
    local node
    if [[ -n $(alive "$DIR/slurmctld.pid") ]]; then
        scancel --full --signal=KILL --state=RUNNING -p debug 2>/dev/null || true
        scancel -p debug 2>/dev/null || true
    fi
    for node in "${NODES[@]}"; do stop_pid_file "$DIR/slurmd-$node.pid"; done
    stop_pid_file "$DIR/slurmctld.pid"
    stop_pid_file "$DIR/munge/munged.pid"
    # Job steps outlive their slurmd only if it died first: end those of this cluster (their spool dirs name it).
    local stepd
    for stepd in $(pgrep -x slurmstepd || true); do
        grep -qaF "$DIR" "/proc/$stepd/cmdline" "/proc/$stepd/environ" 2>/dev/null && kill -9 "$stepd" 2>/dev/null || true
    done
    unlink_conf
    remove_hosts
    say "down"
}

status() {
    local name pid running=0
    for name in slurmctld "${NODES[@]/#/slurmd-}" munge/munged; do
        if pid=$(alive "$DIR/$name.pid"); then echo "$name: running (pid $pid)"; running=1
        else echo "$name: not running"; fi
    done
    if [[ $running -eq 1 ]]; then sinfo -N -o '%N %t %c' 2>/dev/null || true; fi
    [[ -n $(alive "$DIR/slurmctld.pid") ]]
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
