# Example: keep berth's store on a partition that a factory reset does not format, so that after a reset
# the agent re-creates every installed app from the store with no download (its start-up audit).
#
# Assumes a partition labelled "persist" (ext4), mounted at /persist, that the reset leaves alone: change the
# label and /persist here, in berth/persist.mount and in berth/berth-persist.conf to your layout. The compose
# root stays in /var/lib/berth: it is rebuilt from the store after a reset.

FILESEXTRAPATHS:prepend := "${THISDIR}/berth:"

BERTH_PERSIST_DIR ?= "/persist/berth"

SRC_URI += " \
    file://persist.mount \
    file://berth-persist.conf \
"

do_install:append() {
    # The mount itself; berth's drop-in pulls it in (RequiresMountsFor=), so it needs no enabling.
    install -m 0644 ${BERTH_FILES}/persist.mount ${D}${systemd_system_unitdir}/persist.mount

    # The unit's sandbox makes everything but /var/lib/berth read-only: let berth write the store there.
    install -d ${D}${systemd_system_unitdir}/berth.service.d
    install -m 0644 ${BERTH_FILES}/berth-persist.conf ${D}${systemd_system_unitdir}/berth.service.d/persist.conf

    # The default config with the store moved (the line is the commented default in build/config.yml).
    sed -i 's|^# store: .*$|store: ${BERTH_PERSIST_DIR}/store|' ${D}${sysconfdir}/berth/config.yml
    grep -q '^store: ${BERTH_PERSIST_DIR}/store$' ${D}${sysconfdir}/berth/config.yml || \
        bbfatal "berth_%.bbappend: no '# store:' line to set in config.yml"
}

FILES:${PN} += "${systemd_system_unitdir}/persist.mount ${systemd_system_unitdir}/berth.service.d"
