# %postun of the etcd rpm ($1: 0 erase, 1 upgrade), the equivalent of
# %systemd_postun_with_restart: daemon-reload, and on upgrade a running service is restarted
# with the new binary. /var/lib/etcd is never removed.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ]; then
    systemctl try-restart etcd.service >/dev/null 2>&1 || :
fi
exit 0
