# %pre of the etcd rpm ($1: 1 install, 2 upgrade): the etcd system user and group.
getent group etcd >/dev/null || groupadd -r etcd
getent passwd etcd >/dev/null || \
    useradd -r -g etcd -d /var/lib/etcd -s /sbin/nologin -c "etcd user" etcd
exit 0
