//! The closed sets of values a board file takes, as enums: read from their names, and a name
//! outside the set is an error that lists the allowed ones.

/// Marks a value error (as opposed to a structural one from the TOML reader): [`super::parse`]
/// turns it into a [`super::BoardError`] naming the field.
pub(crate) const VALUE_ERROR: &str = "\u{1}value:";

pub(crate) fn not_allowed(value: &str, names: &[&str]) -> String {
    format!("{value:?} is not allowed; allowed: {}", names.join(", "))
}

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $var),+ }

        impl $name {
            /// The names a board file may use, in the order messages list them.
            pub const NAMES: &'static [&'static str] = &[$($s),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$var),)+
                    _ => Err(not_allowed(s, Self::NAMES)),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(|m: String| <D::Error as serde::de::Error>::custom(format!("{VALUE_ERROR}{m}")))
            }
        }
    };
}

str_enum! {
    /// `base`: what the image is built from.
    Base { Debian = "debian", OpenWrt = "openwrt" }
}

str_enum! {
    /// `arch` of a Debian board: Debian's architecture names.
    DebianArch { Amd64 = "amd64", Arm64 = "arm64" }
}

impl DebianArch {
    /// The CPU part of Rust target triples for this architecture.
    pub fn cpu(self) -> &'static str {
        match self {
            DebianArch::Amd64 => "x86_64",
            DebianArch::Arm64 => "aarch64",
        }
    }
    /// QEMU's name for it (binfmt_misc entries `qemu-NAME`).
    pub fn qemu(self) -> &'static str {
        self.cpu()
    }
    /// The architecture of the machine that builds (`None`: not a Debian architecture).
    pub fn host() -> Option<DebianArch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(DebianArch::Amd64),
            "aarch64" => Some(DebianArch::Arm64),
            _ => None,
        }
    }
}

str_enum! {
    /// `arch` of an OpenWrt board.
    OpenWrtArch { Aarch64 = "aarch64", Mips = "mips", Mipsel = "mipsel" }
}

impl OpenWrtArch {
    /// The Rust target for OpenWrt's musl on this architecture.
    pub fn rust_target(self) -> &'static str {
        match self {
            OpenWrtArch::Aarch64 => "aarch64-unknown-linux-musl",
            OpenWrtArch::Mips => "mips-unknown-linux-musl",
            OpenWrtArch::Mipsel => "mipsel-unknown-linux-musl",
        }
    }
    /// Tier 3 targets have no prebuilt std: nightly `-Zbuild-std` with zig as the linker.
    pub fn needs_build_std(self) -> bool {
        !matches!(self, OpenWrtArch::Aarch64)
    }
    /// (bits, big endian, e_machine) of its ELF binaries.
    pub fn elf(self) -> (u8, bool, u16) {
        match self {
            OpenWrtArch::Aarch64 => (64, false, crate::elf::EM_AARCH64),
            OpenWrtArch::Mips => (32, true, crate::elf::EM_MIPS),
            OpenWrtArch::Mipsel => (32, false, crate::elf::EM_MIPS),
        }
    }
    /// The qemu-user binary that runs it.
    pub fn qemu(self) -> &'static str {
        match self {
            OpenWrtArch::Aarch64 => "qemu-aarch64-static",
            OpenWrtArch::Mips => "qemu-mips-static",
            OpenWrtArch::Mipsel => "qemu-mipsel-static",
        }
    }
    /// An example package architecture, for messages.
    pub fn example_package_arch(self) -> &'static str {
        match self {
            OpenWrtArch::Aarch64 => "aarch64_cortex-a53",
            OpenWrtArch::Mips => "mips_24kc",
            OpenWrtArch::Mipsel => "mipsel_24kc",
        }
    }
}

str_enum! {
    /// `outputs` of a Debian board.
    DebianOutput { ImgXz = "img.xz", Qcow2 = "qcow2", Ova = "ova" }
}

str_enum! {
    /// `outputs` of an OpenWrt board (`ipk` is required: the others are built from it).
    OpenWrtOutput { Ipk = "ipk", Overlay = "overlay", Sysupgrade = "sysupgrade" }
}

str_enum! {
    /// `disk.table`: the partition table.
    Table { Gpt = "gpt", Mbr = "mbr" }
}

str_enum! {
    /// `disk.bootloader`.
    Bootloader {
        /// One GPT disk for BIOS (syslinux) and UEFI (systemd-boot).
        SyslinuxSystemdBoot = "syslinux+systemd-boot",
        /// The Raspberry Pi's firmware on a FAT partition of an MBR disk.
        RaspiFirmware = "raspi-firmware",
    }
}

impl Bootloader {
    /// The partition table this boot loader needs.
    pub fn table(self) -> Table {
        match self {
            Bootloader::SyslinuxSystemdBoot => Table::Gpt,
            Bootloader::RaspiFirmware => Table::Mbr,
        }
    }
}

str_enum! {
    /// `disk.partitions[].role`.
    Role { Boot = "boot", Root = "root" }
}

str_enum! {
    /// `disk.partitions[].fs`: the file system.
    Fs { Vfat = "vfat", Ext4 = "ext4" }
}

str_enum! {
    /// `debian.components[]`.
    Component { Main = "main", Contrib = "contrib", NonFree = "non-free", NonFreeFirmware = "non-free-firmware" }
}

str_enum! {
    /// `wifi.band`: GHz.
    Band { G24 = "2.4", G5 = "5" }
}
