#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the tests (`.ci/run` calls it).
# Idempotent: installs slurm-wlm and munge if missing, writes the munge key and slurm.conf once,
# starts munged, slurmctld and slurmd unless they run, and waits until `srun hostname` works.
# Runs as root (SlurmUser=root); not a production setup: no accounting, no cgroups.
set -euo pipefail

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

node="$(hostname)"
cpus="${SLURM_LOCAL_CPUS:-2}"

if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
    || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key 2>/dev/null || true
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
if ! pgrep -x munged >/dev/null; then
  if id munge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
  else
    /usr/sbin/munged --force
  fi
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
if [ ! -f /etc/slurm/slurm.conf ] || ! grep -q "NodeName=${node} " /etc/slurm/slurm.conf; then
  cat > /etc/slurm/slurm.conf <<CONF
# Written by lambda-search deploy/slurm/local-cluster.sh: one node, for tests.
ClusterName=lambda-search-ci
SlurmctldHost=${node}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
MpiDefault=none
JobRequeue=1
KillWait=30
NodeName=${node} CPUs=${cpus} State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
CONF
fi

pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd

for _ in $(seq 1 30); do
  if timeout 20 srun --quiet hostname >/dev/null 2>&1; then
    scontrol update NodeName="${node}" State=RESUME >/dev/null 2>&1 || true
    echo "slurm: single-node cluster up on ${node} (${cpus} CPUs)"
    exit 0
  fi
  scontrol update NodeName="${node}" State=RESUME >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm: srun hostname does not work; see /var/log/slurm/" >&2
exit 1
