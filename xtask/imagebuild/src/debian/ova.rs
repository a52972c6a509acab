//! VirtualBox appliance: a streamOptimized VMDK, an OVF 1.0 descriptor (two NICs: WAN on NAT,
//! LAN on the internal network "spin-lan"; a `vbox:Machine` section for EFI firmware and the
//! serial port), a SHA1 manifest, packed as ustar with the `.ovf` first.

use anyhow::{anyhow, Result};
use runner::cmd;
use runner::host::human;
use runner::progress::qemu_img_progress;
use std::fs;
use std::path::Path;

use super::Ctx;
use crate::stage::{file_name, fixed_uuid, mkdirs};

pub const LAN_NETWORK: &str = "spin-lan";
const MEMORY_MB: u32 = 512;
const CPUS: u32 = 1;

/// The disk file's name inside the OVA.
pub fn vmdk_name(board: &str) -> String {
    format!("spin-{board}-disk1.vmdk")
}

pub fn build(ctx: &Ctx, raw: &Path, ova: &Path, log: &Path) -> Result<()> {
    let b = ctx.board;
    let work = ctx.dir.join("ova.tmp");
    let _ = fs::remove_dir_all(&work);
    mkdirs(&work)?;
    let vmdk = work.join(vmdk_name(&b.name));
    let sh = crate::paths::shell()?;
    cmd!(sh, "qemu-img convert -p -f raw -O vmdk -o subformat=streamOptimized {raw} {vmdk}").run_progress(
        "VMDK (qemu-img)",
        log,
        qemu_img_progress,
    )?;
    fix_vmdk_cid(&vmdk, &fixed_uuid(&b.name, "vmdk-cid")[..8])?;

    let capacity = fs::metadata(raw)?.len();
    let vmdk_size = fs::metadata(&vmdk)?.len();
    let ovf_name = format!("spin-{}.ovf", b.name);
    let mf_name = format!("spin-{}.mf", b.name);
    fs::write(work.join(&ovf_name), ovf(&b.name, &vmdk_name(&b.name), vmdk_size, capacity))?;
    let mut mf = String::new();
    for f in [&ovf_name, &vmdk_name(&b.name)] {
        let path = work.join(f);
        let sum = cmd!(sh, "sha1sum {path}").read()?;
        let hex = sum.split_whitespace().next().unwrap_or_default();
        mf.push_str(&format!("SHA1 ({f}) = {hex}\n"));
    }
    fs::write(work.join(&mf_name), mf)?;

    let tmp = ova.with_extension("ova.tmp");
    let mtime = format!("--mtime=@{}", ctx.epoch);
    let vmdk_file = vmdk_name(&b.name);
    cmd!(sh, "tar --format=ustar --owner=0 --group=0 --numeric-owner --mode=0644 {mtime} -cf {tmp} -C {work} {ovf_name} {vmdk_file} {mf_name}")
        .run_logged("tar (ova)", log)?;
    fs::rename(&tmp, ova)?;
    let _ = fs::remove_dir_all(&work);
    eprintln!("  {}: ovf + {} ({}) + manifest", file_name(ova), vmdk_name(&b.name), human(vmdk_size));
    Ok(())
}

/// qemu-img writes a random content id (`CID=` and up to 8 hex digits: it drops leading zeros)
/// into the VMDK descriptor; a fixed one keeps the OVA reproducible. The descriptor text is
/// NUL-padded to its sectors, so a longer CID shifts the rest of the text into that padding and
/// nothing outside the descriptor moves.
pub fn fix_vmdk_cid(vmdk: &Path, cid: &str) -> Result<()> {
    let mut data = fs::read(vmdk)?;
    let head = &data[..data.len().min(64 * 1024)];
    let pos = head
        .windows(4)
        .position(|w| w == b"CID=")
        .ok_or_else(|| anyhow!("{}: no CID= in the VMDK descriptor", vmdk.display()))?;
    let start = pos + 4;
    let end = start + data[start..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
    let text_end = end
        + data[end..]
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| anyhow!("{}: VMDK descriptor without padding", vmdk.display()))?;
    let mut text = cid.as_bytes().to_vec();
    text.extend_from_slice(&data[end..text_end]);
    let region_end = start + text.len().max(text_end - start);
    if data[text_end..region_end].iter().any(|&b| b != 0) {
        return Err(anyhow!("{}: no room in the VMDK descriptor for CID={cid}", vmdk.display()));
    }
    text.resize(region_end - start, 0);
    data[start..region_end].copy_from_slice(&text);
    Ok(fs::write(vmdk, data)?)
}

fn mac(board: &str, nic: &str) -> String {
    // VirtualBox's OUI 08:00:27 and three fixed bytes.
    let u = fixed_uuid(board, nic).replace('-', "");
    format!("080027{}", &u[..6]).to_uppercase()
}

/// The OVF 1.0 descriptor.
pub fn ovf(board: &str, vmdk: &str, vmdk_size: u64, capacity: u64) -> String {
    let disk_uuid = fixed_uuid(board, "vbox-disk");
    let machine_uuid = fixed_uuid(board, "vbox-machine");
    let name = format!("spin-{board}");
    let wan_mac = mac(board, "nic-wan");
    let lan_mac = mac(board, "nic-lan");
    format!(
        r#"<?xml version="1.0"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
    <File ovf:id="file1" ovf:href="{vmdk}" ovf:size="{vmdk_size}"/>
  </References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="{capacity}" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" vbox:uuid="{disk_uuid}"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks used in the package</Info>
    <Network ovf:name="NAT">
      <Description>WAN: the upstream network (NIC 1, eth0)</Description>
    </Network>
    <Network ovf:name="{LAN_NETWORK}">
      <Description>LAN: the home network the router serves (NIC 2, eth1; VirtualBox internal network)</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <ProductSection>
      <Info>Meta-information about the installed software</Info>
      <Product>SPIN router</Product>
      <Vendor>spin-rs</Vendor>
      <ProductUrl>http://192.168.8.1:13026/</ProductUrl>
    </ProductSection>
    <OperatingSystemSection ovf:id="96">
      <Info>The kind of installed guest operating system</Info>
      <Description>Debian_64</Description>
      <vbox:OSType ovf:required="false">Debian_64</vbox:OSType>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:Caption>{CPUS} virtual CPU</rasd:Caption>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>{CPUS} virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{CPUS}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits>
        <rasd:Caption>{MEMORY_MB} MB of memory</rasd:Caption>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{MEMORY_MB} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{MEMORY_MB}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Caption>sataController0</rasd:Caption>
        <rasd:Description>SATA Controller</rasd:Description>
        <rasd:ElementName>sataController0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>AHCI</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Caption>Ethernet adapter on 'NAT'</rasd:Caption>
        <rasd:Connection>NAT</rasd:Connection>
        <rasd:ElementName>Ethernet adapter on 'NAT'</rasd:ElementName>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Caption>Ethernet adapter on '{LAN_NETWORK}'</rasd:Caption>
        <rasd:Connection>{LAN_NETWORK}</rasd:Connection>
        <rasd:ElementName>Ethernet adapter on '{LAN_NETWORK}'</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:Caption>disk1</rasd:Caption>
        <rasd:Description>Disk Image</rasd:Description>
        <rasd:ElementName>disk1</rasd:ElementName>
        <rasd:HostResource>/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>6</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
    <vbox:Machine ovf:required="false" version="1.16-linux" uuid="{{{machine_uuid}}}" name="{name}" OSType="Debian_64">
      <ovf:Info>Complete VirtualBox machine configuration in VirtualBox format</ovf:Info>
      <Hardware>
        <CPU count="{CPUS}"/>
        <Memory RAMSize="{MEMORY_MB}"/>
        <Firmware type="EFI"/>
        <Boot>
          <Order position="1" device="HardDisk"/>
          <Order position="2" device="None"/>
          <Order position="3" device="None"/>
          <Order position="4" device="None"/>
        </Boot>
        <Network>
          <Adapter slot="0" enabled="true" MACAddress="{wan_mac}" type="82540EM">
            <NAT/>
          </Adapter>
          <Adapter slot="1" enabled="true" MACAddress="{lan_mac}" type="82540EM">
            <InternalNetwork name="{LAN_NETWORK}"/>
          </Adapter>
        </Network>
        <UART>
          <Port slot="0" enabled="true" IOBase="0x3f8" IRQ="4" hostMode="Disconnected"/>
        </UART>
      </Hardware>
      <StorageControllers>
        <StorageController name="SATA" type="AHCI" PortCount="1" useHostIOCache="false" Bootable="true">
          <AttachedDevice type="HardDisk" hotpluggable="false" port="0" device="0">
            <Image uuid="{{{disk_uuid}}}"/>
          </AttachedDevice>
        </StorageController>
      </StorageControllers>
    </vbox:Machine>
  </VirtualSystem>
</Envelope>
"#
    )
}

#[cfg(test)]
mod cid_tests {
    use super::fix_vmdk_cid;

    #[test]
    fn a_short_or_full_length_cid_becomes_the_fixed_one() {
        let dir = tempfile_dir();
        for old in ["abc1234", "abcdef12", "1"] {
            let p = dir.join(format!("d-{old}.vmdk"));
            let mut img = b"KDMV....# Disk DescriptorFile\nversion=1\nCID=".to_vec();
            img.extend_from_slice(old.as_bytes());
            img.extend_from_slice(b"\nparentCID=ffffffff\n");
            img.extend_from_slice(&[0u8; 64]);
            img.extend_from_slice(b"GRAIN");
            std::fs::write(&p, &img).unwrap();
            fix_vmdk_cid(&p, "0badc0de").unwrap();
            let got = std::fs::read(&p).unwrap();
            assert_eq!(got.len(), img.len());
            let text = String::from_utf8_lossy(&got);
            assert!(text.contains("CID=0badc0de\nparentCID=ffffffff\n"), "{text:?}");
            assert!(got.ends_with(b"GRAIN"));
        }
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-cid-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
