# %post of the etcd rpm ($1: 1 install, 2 upgrade), the equivalent of %systemd_post: a 0700
# /var/lib/etcd, daemon-reload and, on first install, the distribution's preset (which decides
# enablement). The service is never started here: the first start uses the operator's config.
mkdir -p /var/lib/etcd
chown etcd:etcd /var/lib/etcd
chmod 0700 /var/lib/etcd
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    systemctl --no-reload preset etcd.service >/dev/null 2>&1 || :
fi
exit 0
