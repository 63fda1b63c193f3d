#!/usr/bin/env bash
# Install and start a single-node SLURM cluster on localhost (Debian 12, root, no systemd), for the end-to-end
# `snakemake --profile profiles/slurm` test. Recipe and pitfalls: ../shared/notes/slurm-on-localhost.md.
# SLURM_ACCOUNTING=1 (default) also starts slurmdbd + MariaDB, so that `sacct` (the plugin's default job-status
# query) works; SLURM_ACCOUNTING=0 gives a lighter cluster (then run snakemake with --slurm-status-command squeue).
# Run once per boot: stop the daemons with slurm-down.sh before running it again.
set -euo pipefail
ACCT=${SLURM_ACCOUNTING:-1}

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
PKGS="munge slurm-client slurmctld slurmd"
[ "$ACCT" = 1 ] && PKGS="$PKGS slurmdbd mariadb-server"
# slurm-down.sh purges what this installs (the packages and the dependencies they pulled in): a SLURM client left
# without its controller makes every later snakemake start wait about 10 s, since the slurm executor plugin asks
# `scontrol show config` when it loads.
STATE=/var/lib/bbqrec-ci
mkdir -p "$STATE"
dpkg-query -W -f='${Package}\n' | sort > "$STATE/packages-before"
apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
dpkg-query -W -f='${Package}\n' | sort | comm -13 "$STATE/packages-before" - >> "$STATE/installed-packages"
rm -f "$STATE/packages-before"

HOST=$(hostname -s)
NCPU=$(nproc)
MEM=$(( $(free -m | awk '/^Mem:/{print $2}') - 256 ))   # above what slurmd detects, the node drains

mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm

if [ "$ACCT" = 1 ]; then
  ACCOUNTING="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  ACCOUNTING="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

# No cgroups here: linuxproc/task none. DefMemPerCPU: without it a job without --mem takes the whole node.
# MinJobAge=300 keeps finished jobs visible to squeue (the plugin requires >= 3 x its init seconds).
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=localcluster
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
${ACCOUNTING}
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
Waittime=0
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${NCPU} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF

# --- munge (the Debian postinst normally creates the key already) ---
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
runuser -u munge -- /usr/sbin/munged
munge -n | unmunge >/dev/null

if [ "$ACCT" = 1 ]; then
  # --- MariaDB (no systemd: started directly, detached) ---
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  setsid /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
      --socket=/run/mysqld/mysqld.sock --bind-address=127.0.0.1 \
      >/var/log/slurm/mariadbd.log 2>&1 </dev/null &
  for i in $(seq 60); do mysqladmin ping >/dev/null 2>&1 && break; sleep 0.5; done
  mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmdbpass';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  # --- slurmdbd ---
  cat > /etc/slurm/slurmdbd.conf <<'EOF'
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmdbpass
StorageLoc=slurm_acct_db
EOF
  chmod 600 /etc/slurm/slurmdbd.conf      # slurmdbd refuses a world-readable config
  /usr/sbin/slurmdbd
  for i in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
fi

# --- controller + compute daemon (both daemonize and write their pid files) ---
/usr/sbin/slurmctld
/usr/sbin/slurmd
for i in $(seq 60); do sinfo -h -o %t 2>/dev/null | grep -qx idle && break; sleep 0.5; done
sinfo -h -o %t | grep -qx idle || { sinfo; tail -20 /var/log/slurm/slurm*.log; exit 1; }

if [ "$ACCT" = 1 ]; then
  # slurmctld registers the cluster itself; the profile's slurm_account "ci" needs an account + user association
  # (kept in MariaDB across restarts, and `sacctmgr add` fails on an existing one)
  sacctmgr -n -P list account ci format=account | grep -qx ci \
    || sacctmgr -i add account ci Description=ci Organization=ci >/dev/null
  sacctmgr -n -P list user root format=defaultaccount | grep -qx ci \
    || sacctmgr -i add user root Account=ci DefaultAccount=ci >/dev/null
fi
sinfo
