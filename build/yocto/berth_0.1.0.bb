# berth: delivers multi-container compose apps to the device robustly (see build/yocto/README.md).
#
# Installs the prebuilt `deno compile` binary for the machine's architecture as /usr/bin/berth, the
# systemd unit (enabled) and the default /etc/berth/config.yml. Nothing is compiled here: the binaries come
# from `deno task compile` (build/out/berth-<arch>) and are put next to this recipe, in files/.

SUMMARY = "berth: compose apps delivered to devices robustly"
DESCRIPTION = "An agent that pulls compose apps and their images from an OCI registry into its own \
crash-safe store, loads them into dockerd and runs them with docker compose, with updates, roll-back and a \
status endpoint."

# The project has no license file yet, so there is nothing for LIC_FILES_CHKSUM to checksum: CLOSED is
# bitbake's value for "not an open-source license, no license text to check". Change both once a LICENSE
# file exists (e.g. LICENSE = "Apache-2.0" and LIC_FILES_CHKSUM = "file://LICENSE;md5=...").
LICENSE = "CLOSED"

# One prebuilt binary per architecture, named as `deno task compile` names them.
def berth_binary(d):
    binaries = {"aarch64": "berth-aarch64", "x86_64": "berth-x86_64"}
    arch = d.getVar("TARGET_ARCH")
    if arch not in binaries:
        bb.fatal("berth: no prebuilt binary for TARGET_ARCH %s; berth is built for %s only "
                 "(build/out/berth-<arch> from deno task compile)" % (arch, ", ".join(sorted(binaries))))
    return binaries[arch]

# Other machines skip the recipe (bitbake says "incompatible with host") instead of failing to parse; the
# bb.fatal above is for a TARGET_ARCH that matches this but has no binary.
COMPATIBLE_HOST = "(aarch64|x86_64).*-linux.*"

BERTH_BINARY = "${@berth_binary(d)}"

SRC_URI = " \
    file://${BERTH_BINARY} \
    file://berth.service \
    file://config.yml \
"

# Where the fetcher unpacks file:// sources: UNPACKDIR since Yocto 5.1 (styhead), WORKDIR before.
BERTH_FILES = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"

inherit systemd

SYSTEMD_SERVICE:${PN} = "berth.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${BERTH_FILES}/${BERTH_BINARY} ${D}${bindir}/berth
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${BERTH_FILES}/berth.service ${D}${systemd_system_unitdir}/berth.service
    install -d ${D}${sysconfdir}/berth
    install -m 0644 ${BERTH_FILES}/config.yml ${D}${sysconfdir}/berth/config.yml
}

# An operator's (or a .bbappend's) edits to the config survive package upgrades.
CONFFILES:${PN} = "${sysconfdir}/berth/config.yml"

# docker: what every meta-virtualization docker recipe RPROVIDES (docker-moby, which LmP builds, or
# docker-ce). docker-compose: compose v2, the docker CLI plugin (meta-virtualization and LmP name it so).
# coreutils: berth flushes the engine's filesystem with `sync -f`, which busybox's sync lacks unless built
# with FEATURE_SYNC_FANCY. glibc and libgcc are added from the binary's own NEEDED entries.
RDEPENDS:${PN} = "docker docker-compose coreutils"

# A deno compile binary carries the program after the runtime: stripping or splitting debug info would cut
# it off, and it was not linked with the distro's LDFLAGS (no GNU_HASH check applies).
INHIBIT_PACKAGE_STRIP = "1"
INHIBIT_PACKAGE_DEBUG_SPLIT = "1"
INHIBIT_SYSROOT_STRIP = "1"
INSANE_SKIP:${PN} += "already-stripped ldflags"
