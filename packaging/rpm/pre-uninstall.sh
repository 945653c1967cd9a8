# %preun of the etcd rpm ($1: 0 erase, 1 upgrade), the equivalent of %systemd_preun: on erase
# the service is disabled and stopped. Data and configuration stay.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now etcd.service >/dev/null 2>&1 || :
fi
exit 0
