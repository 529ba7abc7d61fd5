#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for testing the pipeline's SLURM profile.
#
#   slurm_cluster.sh install            apt-get install the Debian packages (skipped when present)
#   slurm_cluster.sh start [STATE_DIR]  install if needed, write configs into STATE_DIR, start munged, mariadbd,
#                                       slurmdbd, slurmctld and slurmd, wait for an idle node, register the
#                                       cluster/account/user; prints `export SLURM_CONF=...` for clients
#   slurm_cluster.sh stop [STATE_DIR]   cancel every job, stop exactly the recorded daemon PIDs, delete STATE_DIR
#   slurm_cluster.sh status [STATE_DIR] show the recorded daemons and the node state
#
# STATE_DIR defaults to $L2H_SLURM_DIR or /tmp/l2h-slurm. Every address is 127.0.0.1 (the daemons of SLURM 22.05
# still listen on 0.0.0.0:6817-6819; nothing here sends traffic elsewhere). Must run as root (it starts daemons).
# Environment (read by `start`): the one node advertises L2H_SLURM_CPUS (default 16) CPUs, L2H_SLURM_MEM_MB
# (default 131072) MB and L2H_SLURM_GPUS (default 2) GPUs, whatever the machine has (SlurmdParameters=
# config_overrides; nothing enforces them), so that the pipeline's real per-rule requests (threads, mem_mb, gpu) can
# be scheduled here unchanged. The GPUs are empty files standing in for device files: jobs get CUDA_VISIBLE_DEVICES
# but no device, and code in them runs on the CPU.
# The cluster is named l2h, its only partition `main`, its account `l2h`.
# Clients find the config through /etc/slurm/slurm.conf, a symlink to STATE_DIR/etc/slurm.conf made by `start` (and
# removed by `stop`; `start` refuses to replace a real file there): SLURM_CONF alone is not enough, because the
# executor plugin's job step strips every SLURM_* variable before its nested srun (snakemake-executor-plugin-slurm
# issue #164), so srun inside a job falls back to the default path.
set -euo pipefail

CLUSTER=l2h
PARTITION=main
ACCOUNT=l2h
PACKAGES=(munge slurm-client slurmctld slurmd slurmdbd mariadb-server)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)   # start order
DEFAULT_CONF=/etc/slurm/slurm.conf

die() { echo "slurm_cluster: $*" >&2; exit 1; }
log() { echo "slurm_cluster: $*" >&2; }

state_dir() { realpath -m "${1:-${L2H_SLURM_DIR:-/tmp/l2h-slurm}}"; }
MARK="written by workflow/scripts/slurm_cluster.sh"

# is_our_state DIR: DIR holds a cluster state written by this script (so it may be deleted)
is_our_state() { [[ -f $1/etc/slurm.conf ]] && grep -q "$MARK" "$1/etc/slurm.conf"; }

installed() {
    local p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
    done
}

cmd_install() {
    [[ $EUID -eq 0 ]] || die "install needs root"
    if installed; then log "packages already installed"; return 0; fi
    # A policy-rc.d that exits 101 keeps the packages' init scripts from starting any daemon during install.
    local policy=/usr/sbin/policy-rc.d backup=""
    if [[ -e $policy ]]; then backup=$(mktemp); cp -p "$policy" "$backup"; fi
    restore_policy() { if [[ -n $backup ]]; then mv -f "$backup" "$policy"; else rm -f "$policy"; fi; }
    trap restore_policy EXIT
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
    restore_policy
    trap - EXIT
    installed || die "packages missing after apt-get install"
}

# is_ours NAME PIDFILE: the recorded PID is alive (not a zombie) and still runs the expected program
is_ours() {
    local pidfile=$2 pid stat
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ ${stat#*) } != Z* ]] && [[ $(<"/proc/$pid/comm") == "$1"* ]]
}

# is_our_link PATH: PATH is a symlink to a slurm.conf written by this script (in any state dir)
is_our_link() {
    [[ -L $1 ]] || return 1
    local target
    target=$(readlink "$1")
    [[ $target == */etc/slurm.conf ]] && { [[ ! -e $target ]] || grep -q "$MARK" "$target"; }
}

# wait_for DESCRIPTION SECONDS COMMAND...: poll COMMAND (each try limited to 10 s) until it succeeds
wait_for() {
    local what=$1 limit=$2 start=$SECONDS
    shift 2
    local limited=(timeout 10)
    [[ $(type -t "$1") == function ]] && limited=()
    until "${limited[@]}" "$@" >/dev/null 2>&1; do
        ((SECONDS - start < limit)) || die "timed out after $limit s waiting for $what (logs in $STATE/log)"
        sleep 0.5
    done
    log "$what ready after $((SECONDS - start)) s"
}

# spawn NAME COMMAND...: start a daemon in the foreground mode of its own session, record its PID
spawn() {
    local name=$1
    shift
    setsid "$@" >>"$STATE/log/$name.out" 2>&1 </dev/null &
    echo $! >"$STATE/pids/$name"
}

write_configs() {
    local host=$1 cpus=${L2H_SLURM_CPUS:-16} mem_mb=${L2H_SLURM_MEM_MB:-131072}
    local gpus=${L2H_SLURM_GPUS:-2} gres_line="" gres_types=""
    if ((gpus > 0)); then gres_line=" Gres=gpu:$gpus"; gres_types="GresTypes=gpu"; fi

    cat >"$STATE/etc/slurm.conf" <<EOF
# Test cluster $MARK; every address is loopback.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$STATE/run/munge.socket
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# The node advertises the CPUs and memory written below, not what the machine has (nothing enforces them).
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
MinJobAge=300
KillWait=5
MailProg=/bin/true
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
# for the slurmdbd connection, AccountingStoragePass names the munge socket
AccountingStoragePass=$STATE/run/munge.socket
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
# keep the comment (the executor plugin writes rule name + wildcards there) in the accounting records
AccountingStoreFlags=job_comment
AccountingStorageTRES=gres/gpu
$gres_types
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb$gres_line State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    if ((gpus > 0)); then
        # SLURM wants one device file per GPU: empty regular files stand in for them
        local i
        for ((i = 0; i < gpus; i++)); do : >"$STATE/etc/fakegpu$i"; done
        echo "NodeName=$host Name=gpu File=$STATE/etc/fakegpu[0-$((gpus - 1))]" >"$STATE/etc/gres.conf"
    fi

    cat >"$STATE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$STATE/run/munge.socket
DbdHost=$host
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$STATE/etc/slurmdbd.conf"

    cat >"$STATE/etc/my.cnf" <<EOF
[mysqld]
datadir=$STATE/mysql
socket=$STATE/run/mysqld.sock
pid-file=$STATE/run/mysqld.pid
log-error=$STATE/log/mariadb.log
skip-networking
user=root
innodb_buffer_pool_size=32M
[client]
socket=$STATE/run/mysqld.sock
EOF
}

node_state() { timeout 10 sinfo -h -N -o %t 2>/dev/null | head -n1; }
node_idle() { [[ $(node_state) == idle ]]; }

# on a failed start: show the end of every log, then stop what was started
start_failed() {
    local f
    log "start failed; the end of each log follows, then everything started is stopped"
    for f in "$STATE"/log/*; do
        [[ -s $f ]] && { echo "----- $f" >&2; tail -n 15 "$f" >&2; }
    done
    cmd_stop "$STATE" || true
}

cmd_start() {
    [[ $EUID -eq 0 ]] || die "start needs root"
    STATE=$(state_dir "${1:-}")
    local name
    if [[ -d $STATE/pids ]]; then
        for name in "${DAEMONS[@]}"; do
            is_ours "$name" "$STATE/pids/$name" && die "a cluster is already running from $STATE (stop it first)"
        done
    fi
    if (exec 3<>/dev/tcp/127.0.0.1/6817) 2>/dev/null; then
        die "port 6817 is in use: another slurmctld is running on this machine"
    fi
    if [[ -e $DEFAULT_CONF || -L $DEFAULT_CONF ]] && ! is_our_link "$DEFAULT_CONF"; then
        die "$DEFAULT_CONF exists and is not a link made by this script: this machine has a SLURM setup of its own"
    fi
    if [[ -e $STATE ]] && ! is_our_state "$STATE" && [[ -n $(ls -A "$STATE") ]]; then
        die "$STATE is not empty and holds no cluster state of this script: give an empty or new folder"
    fi
    cmd_install
    rm -rf "$STATE"
    mkdir -p "$STATE"/{etc,pids,run,log,munge,ctld,d,mysql}
    chmod 700 "$STATE/munge"
    trap 'start_failed' EXIT
    local host
    host=$(hostname -s)
    write_configs "$host"
    export SLURM_CONF=$STATE/etc/slurm.conf
    mkdir -p "$(dirname "$DEFAULT_CONF")"
    ln -sfn "$SLURM_CONF" "$DEFAULT_CONF"

    # munge: its own key and socket inside the state dir
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$STATE/munge/munge.key"
    spawn munged munged --foreground --force --key-file="$STATE/munge/munge.key" \
        --socket="$STATE/run/munge.socket" --pid-file="$STATE/run/munged.pid" \
        --seed-file="$STATE/munge/seed" --log-file="$STATE/log/munged.log"
    wait_for munged 20 test -S "$STATE/run/munge.socket"

    # MariaDB on a unix socket only (skip-networking), holding the accounting database
    mariadb-install-db --defaults-file="$STATE/etc/my.cnf" --auth-root-authentication-method=socket \
        --skip-test-db >"$STATE/log/mariadb-install.out" 2>&1
    spawn mariadbd mariadbd --defaults-file="$STATE/etc/my.cnf"
    wait_for mariadbd 60 mariadb --defaults-file="$STATE/etc/my.cnf" -u root -e "SELECT 1"
    mariadb --defaults-file="$STATE/etc/my.cnf" -u root -e "
        CREATE DATABASE slurm_acct_db;
        CREATE USER 'slurm'@'localhost' IDENTIFIED BY 'slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

    # slurmdbd finds slurmdbd.conf beside $SLURM_CONF; its MySQL client reaches the socket via MYSQL_UNIX_PORT
    MYSQL_UNIX_PORT=$STATE/run/mysqld.sock spawn slurmdbd slurmdbd -D
    wait_for "slurmdbd" 60 sacctmgr -n list cluster
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description=l2h-tests Organization=l2h >/dev/null
    sacctmgr -i add user "$(id -un)" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER" >/dev/null

    spawn slurmctld slurmctld -D -i -f "$SLURM_CONF"
    wait_for slurmctld 60 scontrol ping
    spawn slurmd slurmd -D -f "$SLURM_CONF"
    wait_for "an idle node" 30 node_idle
    trap - EXIT
    log "cluster $CLUSTER is up (node $host, partition $PARTITION, account $ACCOUNT, state $STATE)"
    echo "export SLURM_CONF=$SLURM_CONF"
}

# terminate NAME...: SIGTERM the recorded daemons, wait up to 10 s for them to end, SIGKILL what is left
terminate() {
    local name i pids=()
    for name in "$@"; do
        is_ours "$name" "$STATE/pids/$name" && { kill -TERM "$(<"$STATE/pids/$name")" 2>/dev/null || true; }
    done
    for ((i = 0; i < 40; i++)); do
        pids=()
        for name in "$@"; do is_ours "$name" "$STATE/pids/$name" && pids+=("$name"); done
        ((${#pids[@]} == 0)) && return 0
        sleep 0.25
    done
    for name in "${pids[@]}"; do
        log "$name ($(<"$STATE/pids/$name")) ignored SIGTERM; sending SIGKILL"
        kill -KILL "$(<"$STATE/pids/$name")" 2>/dev/null || true
    done
    sleep 0.5
}

# job_processes: PIDs of processes left from this cluster's jobs (their environment names a job and this
# cluster's slurm.conf); a cancelled job's process can outlive slurmstepd when it ignores SIGTERM
job_processes() {
    local dir pid
    for dir in /proc/[0-9]*; do
        pid=${dir#/proc/}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        tr '\0' '\n' 2>/dev/null < "$dir/environ" | awk -v conf="SLURM_CONF=$STATE/etc/slurm.conf" \
            '$0 == conf {c = 1} /^SLURM_JOB_ID=/ {j = 1} END {exit !(c && j)}' && echo "$pid"
    done
    return 0
}

# kill_job_processes: SIGTERM, then SIGKILL, to whatever job_processes finds
kill_job_processes() {
    local sig pids
    for sig in TERM KILL; do
        mapfile -t pids < <(job_processes)
        ((${#pids[@]} == 0)) && return 0
        log "job processes still running after the cluster stopped; sending SIG$sig: ${pids[*]}"
        kill -s "$sig" "${pids[@]}" 2>/dev/null || true
        sleep 2
    done
    mapfile -t pids < <(job_processes)
    ((${#pids[@]} == 0)) || die "job processes survived SIGKILL: ${pids[*]}"
}

cmd_stop() {
    STATE=$(state_dir "${1:-}")
    is_our_state "$STATE" || { log "no cluster state in $STATE"; return 0; }
    export SLURM_CONF=$STATE/etc/slurm.conf
    local i name
    # Cancel every job first: job steps run in slurmstepd processes that outlive slurmd.
    if is_ours slurmctld "$STATE/pids/slurmctld"; then
        scancel --full --quiet "--user=$(id -un)" 2>/dev/null || true
        for ((i = 0; i < 60; i++)); do
            [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
    # in dependency order; the daemons within a group stop together
    terminate slurmd slurmctld
    terminate slurmdbd
    terminate mariadbd munged
    for name in "${DAEMONS[@]}"; do
        if is_ours "$name" "$STATE/pids/$name"; then die "$name still running ($(<"$STATE/pids/$name"))"; fi
    done
    kill_job_processes
    if is_our_link "$DEFAULT_CONF"; then rm -f "$DEFAULT_CONF"; fi
    rm -rf "$STATE"
    log "stopped; removed $STATE"
}

cmd_status() {
    STATE=$(state_dir "${1:-}")
    export SLURM_CONF=$STATE/etc/slurm.conf
    local name running=0
    for name in "${DAEMONS[@]}"; do
        if is_ours "$name" "$STATE/pids/$name"; then
            echo "$name running (pid $(<"$STATE/pids/$name"))"
            running=$((running + 1))
        else
            echo "$name not running"
        fi
    done
    ((running > 0)) && echo "node: $(node_state)"
    ((running == ${#DAEMONS[@]}))
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start "${2:-}" ;;
    stop) cmd_stop "${2:-}" ;;
    status) cmd_status "${2:-}" ;;
    *) die "usage: $0 {install|start|stop|status} [STATE_DIR]" ;;
esac
