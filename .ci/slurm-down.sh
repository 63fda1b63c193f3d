#!/usr/bin/env bash
# Stop the daemons started by slurm-up.sh, by PID, in reverse start order (each waited for up to 10 s), then purge
# the packages it installed (with the dependencies they pulled in), so that the machine is as slurm-up.sh found it.
for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid /run/mysqld/mysqld.pid /run/munge/munged.pid; do
  [ -s "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || continue
  for i in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
done

STATE=/var/lib/bbqrec-ci/installed-packages
if [ -s "$STATE" ]; then
  export DEBIAN_FRONTEND=noninteractive
  # a failed purge leaves the list for the next run and says so, without failing the suite that ran
  if apt-get purge -y -qq $(sort -u "$STATE") >/dev/null; then
    rm -f "$STATE"
  else
    echo "slurm-down.sh: could not purge $(sort -u "$STATE" | tr '\n' ' ')(listed in $STATE)" >&2
  fi
fi
