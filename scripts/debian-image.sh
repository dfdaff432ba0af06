#!/usr/bin/env bash
# scripts/debian-image.sh OUTPUT.raw
#
# Builds a small bootable Debian 12 (bookworm) amd64 disk image from Debian's packages: a sparse
# raw disk of 2 GiB (DEBIAN_IMAGE_SIZE_MIB) that boots under legacy BIOS and under UEFI, made to
# be imported into Kiln as an AMI (ImportImage, or `kiln import`). Kiln's tests build it once and
# boot it; users get a bootable Debian AMI without downloading one. docs/debian-image.md says
# what is in it.
#
# Run it as root (mmdebstrap's root mode, and file ownership in the image). It needs no loop
# device and no block device at all: the root file system is made from a directory with
# `mkfs.ext4 -d`, the EFI system partition with mtools, and both are written into one file. The
# only mounts are those mmdebstrap makes inside the tree it builds (/proc, /sys, /dev).
#
# The steps, and why they are as they are:
#  1. mmdebstrap, variant minbase (Essential and Priority: required, so apt and dpkg but no
#     standard tools), without Recommends, and with dpkg leaving out documentation, man pages
#     and translations: the image holds a few hundred MB. The packages are the cloud kernel
#     (virtio, NVMe and ENA drivers, few others), systemd with systemd-networkd, cloud-init and
#     OpenSSH. DEBIAN_MIRROR (default http://deb.debian.org/debian) is where the packages come
#     from; the image's own sources.list names deb.debian.org, so an instance made from it does
#     not depend on the builder's mirror. DEBIAN_DEB_CACHE, when set, is a folder that keeps the
#     downloaded .deb files between builds.
#  2. The configuration Kiln's guests need (files written below, each with its reason): DHCP on
#     any NIC, cloud-init limited to the datasources Kiln serves, the boot record, SSH host keys
#     made at first boot rather than shared by every instance, a locked root password.
#  3. A GPT disk laid out like Debian's own cloud images: partition 14 the BIOS boot partition
#     (3 MiB, GRUB's core.img), 15 the EFI system partition (124 MiB, FAT32), 1 the ext4 root,
#     last on the disk so that it can grow into a larger volume.
#  4. GRUB from the host's grub-mkimage (grub-install wants block devices): an i386-pc core.img
#     in partition 14 with boot.img in the MBR, and an x86_64-efi image at
#     EFI/BOOT/BOOTX64.EFI, the removable-media path every UEFI firmware tries without NVRAM
#     entries. Both carry a small early config that finds the root by its file system UUID and
#     reads /boot/grub/grub.cfg there. The guest has no GRUB package: grub.cfg boots /vmlinuz
#     and /initrd.img, the links Debian keeps pointing at the newest kernel, so kernel upgrades
#     inside the guest need no boot loader update.
set -euo pipefail
# The overlay below is copied over / in the image, modes included.
umask 022
# mkfs.*, sfdisk and chroot live in /usr/sbin, which a sudo or su environment may leave off PATH.
PATH=$PATH:/usr/sbin:/sbin

die() {
  echo "debian-image.sh: $*" >&2
  exit 1
}

[[ $# -eq 1 && $1 != -* ]] || die "usage: $0 OUTPUT.raw (as root; env DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR, DEBIAN_DEB_CACHE, DEBIAN_IMAGE_SIZE_MIB)"
output=$1
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mirror=${mirror%/}
security_mirror=${DEBIAN_SECURITY_MIRROR:-${mirror%/debian}/debian-security}
size_mib=${DEBIAN_IMAGE_SIZE_MIB:-2048}
[[ $size_mib =~ ^[0-9]+$ && $size_mib -ge 1024 ]] || die "DEBIAN_IMAGE_SIZE_MIB must be a whole number of MiB, at least 1024"
[[ -d $(dirname "$output") ]] || die "no folder $(dirname "$output") for $output"
[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap's root mode, and root-owned files in the image)"

missing=()
for tool in mmdebstrap grub-mkimage sfdisk mkfs.ext4 mkfs.vfat mmd mcopy dd truncate; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
for file in /usr/lib/grub/i386-pc/boot.img /usr/lib/grub/i386-pc/moddep.lst /usr/lib/grub/x86_64-efi/moddep.lst; do
  [[ -e $file ]] || missing+=("$file")
done
if ((${#missing[@]})); then
  die "missing ${missing[*]}; on Debian: apt-get install mmdebstrap grub-pc-bin grub-efi-amd64-bin fdisk e2fsprogs dosfstools mtools"
fi

# Everything is built in a temporary folder (on /var/tmp: the root tree is a few hundred MB,
# more than a tmpfs /tmp may hold) and the image is renamed into place only when complete.
work=$(mktemp -d "${TMPDIR:-/var/tmp}/kiln-debian-image.XXXXXX")
partial="$output.partial"
cleanup() {
  local status=$?
  # mmdebstrap unmounts what it mounted even when it fails; a leftover mount would make rm
  # recurse into the host's /proc, so check before removing.
  if grep -q " $work/" /proc/self/mounts; then
    echo "debian-image.sh: $work still has mounts; left in place" >&2
  else
    rm -rf "$work"
  fi
  if [[ $status -ne 0 ]]; then
    rm -f "$partial"
    echo "debian-image.sh: failed (exit $status); $output not written" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
start=$SECONDS
say() { echo "debian-image.sh: [$((SECONDS - start))s] $*" >&2; }

root="$work/root"
overlay="$work/overlay"
# One UUID for the root file system: GRUB, the kernel command line and fstab all find it by it.
root_uuid=$(cat /proc/sys/kernel/random/uuid)
esp_id=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ' | tr a-f A-F)

# --- Files added to the image --------------------------------------------------------------
mkdir -p "$overlay"/etc/{default,systemd/system,systemd/network,cloud/cloud.cfg.d,apt} \
  "$overlay"/etc/systemd/system/systemd-networkd-wait-online.service.d \
  "$overlay"/usr/local/sbin "$overlay"/boot/efi

echo kiln-debian >"$overlay/etc/hostname"
cat >"$overlay/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	kiln-debian
::1	localhost ip6-localhost ip6-loopback
ff02::1	ip6-allnodes
ff02::2	ip6-allrouters
EOF

# These go in before the kernel package, whose initramfs is made while nothing tells which
# file system the root will be (the build has no root device to probe): naming ext4 makes it
# carry e2fsck, so the root is checked before it is mounted.
mkdir -p "$work/early/etc/initramfs-tools/conf.d"
echo FSTYPE=ext4 >"$work/early/etc/initramfs-tools/conf.d/kiln-root-fstype"
# The ESP is mounted on first access (automount), so the guest can see and update its boot
# loader but never waits for it while booting: a slow udev on a busy host must not fail a boot
# over a partition the system does not need. No fsck.vfat in the image: not checked.
cat >"$work/early/etc/fstab" <<EOF
# <file system>	<mount point>	<type>	<options>	<dump>	<pass>
UUID=$root_uuid	/	ext4	rw,discard,errors=remount-ro	0	1
UUID=${esp_id:0:4}-${esp_id:4:4}	/boot/efi	vfat	umask=0077,noauto,x-systemd.automount,nofail	0	0
EOF

cat >"$overlay/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF

# C.UTF-8 is built into libc: with it set, cloud-init's locale module finds nothing to generate.
echo LANG=C.UTF-8 >"$overlay/etc/default/locale"

# DHCP on every Ethernet NIC, whatever its name (enp0s2, ens5, eth0). cloud-init, when it runs,
# writes its own 10-cloud-init-*.network files, which sort first and win.
cat >"$overlay/etc/systemd/network/90-kiln-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=yes
EOF

# Only units that want network-online.target wait for this (cloud-init's, when it is enabled).
# One configured NIC is enough, and a NIC that never gets an address costs 30 s, not 2 minutes.
cat >"$overlay/etc/systemd/system/systemd-networkd-wait-online.service.d/kiln.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30
EOF

# cloud-init's generator runs ds-identify at every boot. With more than one datasource listed,
# it enables cloud-init only for a datasource it positively identifies, and otherwise disables
# cloud-init for that boot: a guest with no metadata service boots at full speed. Ec2 is
# identified by the DMI system UUID and serial number both starting with "ec2" (and equal), or
# a Xen /sys/hypervisor/uuid starting with "ec2"; NoCloud by a file system labelled CIDATA (or
# ds=nocloud on the kernel command line). (A list of one datasource plus None would skip the
# checks and always wait for a metadata service.) networkd is the only network renderer here.
cat >"$overlay/etc/cloud/cloud.cfg.d/90-kiln.cfg" <<'EOF'
# Written by Kiln's scripts/debian-image.sh. ds-identify enables cloud-init only when one of
# these is identified: Ec2 by DMI (system UUID and serial number equal and starting with ec2),
# NoCloud by a file system labelled CIDATA. Otherwise cloud-init stays off for that boot.
datasource_list: [ NoCloud, Ec2, None ]
system_info:
  # The user Debian's own EC2 images make, with the launch key pair's public key.
  default_user:
    name: admin
    lock_passwd: true
    gecos: Debian
    groups: [ adm, sudo ]
    sudo: [ "ALL=(ALL) NOPASSWD:ALL" ]
    shell: /bin/bash
  network:
    renderers: [ networkd ]
# Host keys: Ed25519 and ECDSA, which every current SSH client takes. RSA is left out: making a
# 3072-bit key is the slowest step of a first boot under emulation (TCG).
ssh_genkeytypes: [ ed25519, ecdsa ]
EOF

# Debian's openssh-server makes host keys when it is installed, which would give every instance
# of the image the same keys: they are removed below and made at first boot instead, after
# cloud-init (which orders itself before a unit of this name) has had its say. When cloud-init
# made some, they are the machine's keys; only a boot without it makes every type here.
cat >"$overlay/etc/systemd/system/sshd-keygen.service" <<'EOF'
[Unit]
Description=OpenSSH host keys for this machine
Before=ssh.service
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=ssh.service
EOF

# The boot record: one line per boot in /var/lib/kiln/boots, "N BOOT_ID DATE", flushed to disk,
# and the same news on the console (which is the serial port) for whoever reads its log.
cat >"$overlay/usr/local/sbin/kiln-boot-record" <<'EOF'
#!/bin/sh
# Appends "N BOOT_ID DATE" to /var/lib/kiln/boots, N counting this machine's boots from 1.
set -eu
file=/var/lib/kiln/boots
mkdir -p "${file%/*}"
n=1
[ -f "$file" ] && n=$(($(wc -l <"$file") + 1))
id=$(cat /proc/sys/kernel/random/boot_id)
printf '%s %s %s\n' "$n" "$id" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$file"
sync "$file"
sync "${file%/*}"
echo "kiln-boot-record: boot $n $id"
EOF
chmod 0755 "$overlay/usr/local/sbin/kiln-boot-record"

cat >"$overlay/etc/systemd/system/kiln-boot-record.service" <<'EOF'
[Unit]
Description=Kiln boot record (/var/lib/kiln/boots)
After=local-fs.target
RequiresMountsFor=/var/lib/kiln

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/kiln-boot-record
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
EOF

# --- 1. The root tree ----------------------------------------------------------------------
packages=(
  linux-image-cloud-amd64 initramfs-tools zstd
  systemd-sysv udev dbus libpam-systemd systemd-resolved
  iproute2 netbase
  openssh-server sudo
  cloud-init cloud-guest-utils
  e2fsprogs
)
cache_opts=()
if [[ -n ${DEBIAN_DEB_CACHE:-} ]]; then
  mkdir -p "$DEBIAN_DEB_CACHE"
  cache=$(cd "$DEBIAN_DEB_CACHE" && pwd)
  # The pattern mmdebstrap's manual gives for a local package cache.
  cache_opts=(
    --skip=download/empty --skip=essential/unlink
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/'
    --setup-hook="sync-in '$cache' /var/cache/apt/archives/"
    --customize-hook="sync-out /var/cache/apt/archives '$cache'"
  )
fi

say "mmdebstrap bookworm from $mirror"
mkdir "$root"
mmdebstrap --mode=root --variant=minbase --arch=amd64 \
  --include="$(
    IFS=,
    echo "${packages[*]}"
  )" \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  "${cache_opts[@]}" \
  --essential-hook="sync-in '$work/early' /" \
  --customize-hook="sync-in '$overlay' /" \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd.service systemd-resolved.service sshd-keygen.service kiln-boot-record.service' \
  --customize-hook='chroot "$1" passwd --lock root' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --customize-hook='ln -sf ../run/systemd/resolve/stub-resolv.conf "$1"/etc/resolv.conf' \
  bookworm "$root" \
  "deb $mirror bookworm main" \
  "deb $mirror bookworm-updates main" \
  "deb $security_mirror bookworm-security main"

# apt's daily timers would fetch package lists in the background of every fresh instance; an
# image that Kiln boots and tests reads should stay quiet unless asked.
rm -f "$root"/etc/systemd/system/timers.target.wants/apt-daily*.timer
# Left by dpkg and debconf, and useless in an image.
rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
say "root tree: $(du -sm "$root" | cut -f1) MiB"

# --- 2. GRUB --------------------------------------------------------------------------------
# The menu lives on the root file system, so the guest can change it; GRUB's modules are copied
# next to it so that `insmod` in it finds any module the boot images do not carry.
mkdir -p "$root/boot/grub"
for platform in i386-pc x86_64-efi; do
  mkdir "$root/boot/grub/$platform"
  cp /usr/lib/grub/"$platform"/*.mod /usr/lib/grub/"$platform"/*.lst "$root/boot/grub/$platform/"
done
# Serial console last on the kernel command line: /dev/console, hence the kernel's messages,
# systemd's and the login prompt, is the serial port, where a test (or `GetConsoleOutput`) reads.
cmdline="root=UUID=$root_uuid ro console=tty0 console=ttyS0,115200"
cat >"$root/boot/grub/grub.cfg" <<EOF
# Written by Kiln's scripts/debian-image.sh. No GRUB package updates it: it boots the links
# /vmlinuz and /initrd.img, which Debian points at the newest kernel (and .old at the one before).
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set default=0
set timeout=1
insmod part_gpt
insmod ext2
search --no-floppy --fs-uuid --set=root $root_uuid
menuentry 'Debian GNU/Linux 12 (bookworm)' {
  linux /vmlinuz $cmdline
  initrd /initrd.img
}
if [ -f /vmlinuz.old ]; then
  menuentry 'Debian GNU/Linux 12 (bookworm), previous kernel' {
    linux /vmlinuz.old $cmdline
    initrd /initrd.img.old
  }
fi
EOF

# The early config built into both boot images: find the root, read the menu from it.
cat >"$work/early.cfg" <<EOF
search --no-floppy --fs-uuid --set=root $root_uuid
set prefix=(\$root)/boot/grub
EOF
# What the boot images carry themselves: enough to find and read the root and show the menu;
# the rest is loaded from /boot/grub/<platform> on demand.
grub_modules=(part_gpt ext2 search search_fs_uuid normal configfile echo test serial terminal linux)
grub-mkimage -O i386-pc -o "$work/core.img" -c "$work/early.cfg" -p /boot/grub biosdisk "${grub_modules[@]}"
grub-mkimage -O x86_64-efi -o "$work/BOOTX64.EFI" -c "$work/early.cfg" -p /boot/grub fat efi_gop "${grub_modules[@]}"

# --- 3. The disk --------------------------------------------------------------------------
# Sectors of 512 bytes. Debian's cloud images have the same partition numbers and places.
bios_start=2048 bios_sectors=6144        # 1 MiB, 3 MiB long
esp_start=8192 esp_sectors=253952        # 4 MiB, 124 MiB long
root_start=262144                        # 128 MiB, to the end (less the backup GPT)
total_sectors=$((size_mib * 2048))
root_sectors=$(((total_sectors - 34 - root_start) / 8 * 8))
core_sectors=$((($(stat -c %s "$work/core.img") + 511) / 512))
((core_sectors <= bios_sectors)) || die "core.img ($core_sectors sectors) does not fit the BIOS boot partition"

say "disk: ${size_mib} MiB, GPT"
rm -f "$partial"
truncate -s "${size_mib}M" "$partial"
# The protective MBR sfdisk writes (one 0xEE partition over the disk) is what BIOS firmware
# sees; GRUB's boot.img goes in its first 440 bytes below.
sfdisk --quiet --no-reread --no-tell-kernel "$partial" <<EOF
label: gpt
unit: sectors
${partial}1 : start=$root_start, size=$root_sectors, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="kiln-root"
${partial}14 : start=$bios_start, size=$bios_sectors, type=21686148-6449-6E6F-744E-656564454649, name="bios-boot"
${partial}15 : start=$esp_start, size=$esp_sectors, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp"
EOF

say "root file system (ext4, from the tree)"
# Made in place at the partition's offset. Without metadata_csum_seed and orphan_file, which
# newer mke2fs defaults may turn on and bookworm's GRUB 2.06 cannot read; lazy init because
# the file's holes already read as zeros, so the image stays sparse.
mkfs.ext4 -q -F -b 4096 -O ^metadata_csum_seed,^orphan_file -L kiln-root -U "$root_uuid" -d "$root" \
  -E "offset=$((root_start * 512)),lazy_itable_init=1,lazy_journal_init=1" \
  "$partial" "$((root_sectors / 8))"

say "EFI system partition (FAT32)"
mkfs.vfat -F 32 -n ESP -i "$esp_id" -C "$work/esp.img" $((esp_sectors / 2)) >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
dd if="$work/esp.img" of="$partial" bs=512 seek="$esp_start" conv=notrunc,sparse status=none

say "BIOS boot: core.img at sector $bios_start, boot.img in the MBR"
# Little-endian 64-bit number into the image at a byte offset.
put_u64() {
  local offset=$1 value=$2 bytes="" i
  for ((i = 0; i < 8; i++)); do
    bytes+=$(printf '\\x%02x' $(((value >> (8 * i)) & 255)))
  done
  printf "$bytes" | dd of="$3" bs=1 seek="$offset" conv=notrunc status=none
}
# core.img's first sector (diskboot.img) ends in a block list, 12 bytes (start sector u64,
# sector count u16, load segment u16), of the rest of core.img: grub-mkimage fills in the
# count and leaves the start at sector 2, where core.img sits right after an MBR. Ours is in
# partition 14, so the start becomes the partition's second sector.
cp "$work/core.img" "$work/core-placed.img"
put_u64 $((512 - 12)) $((bios_start + 1)) "$work/core-placed.img"
dd if="$work/core-placed.img" of="$partial" bs=512 seek="$bios_start" conv=notrunc status=none
# boot.img loads core.img's first sector from the sector number at 0x5c (grub-setup's
# GRUB_BOOT_MACHINE_KERNEL_SECTOR). Only its first 440 bytes go in: the disk signature and the
# partition table after them stay as sfdisk wrote them.
cp /usr/lib/grub/i386-pc/boot.img "$work/boot.img"
put_u64 $((0x5c)) "$bios_start" "$work/boot.img"
# As grub-setup does for a hard disk: two NOPs over the jump at 0x66, so a BIOS that passes a
# floppy drive number in DL is corrected to the first hard disk.
printf '\x90\x90' | dd of="$work/boot.img" bs=1 seek=$((0x66)) conv=notrunc status=none
dd if="$work/boot.img" of="$partial" bs=440 count=1 conv=notrunc status=none

mv "$partial" "$output"
say "wrote $output: $((size_mib)) MiB, $(du -m "$output" | cut -f1) MiB of data"
