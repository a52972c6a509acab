// Service names for well-known destination ports (edge labels).
"use strict";

window.PORT_SERVICES = {
  20: "ftp-data", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "dns", 67: "dhcp", 68: "dhcp",
  69: "tftp", 80: "http", 110: "pop3", 123: "ntp", 137: "netbios", 138: "netbios", 139: "netbios",
  143: "imap", 161: "snmp", 162: "snmp-trap", 179: "bgp", 389: "ldap", 443: "https", 445: "smb",
  465: "smtps", 500: "ipsec", 514: "syslog", 546: "dhcpv6", 547: "dhcpv6", 554: "rtsp", 587: "submission",
  631: "ipp", 636: "ldaps", 853: "dns-over-tls", 873: "rsync", 993: "imaps", 995: "pop3s",
  1194: "openvpn", 1883: "mqtt", 1900: "ssdp", 3074: "xbox", 3306: "mysql", 3389: "rdp",
  3478: "stun", 3479: "stun", 4500: "ipsec-nat", 5060: "sip", 5061: "sips", 5222: "xmpp",
  5223: "apple-push", 5228: "google-play", 5353: "mdns", 5355: "llmnr", 5683: "coap",
  8008: "http-alt", 8080: "http-alt", 8443: "https-alt", 8883: "mqtts", 9000: "http-alt",
  13026: "spinweb", 19302: "stun", 51820: "wireguard",
};

// A short label for a flow: service name, else "icmp" / the port number.
window.serviceName = function (port, protocol) {
  if (protocol === 1) return "icmp";
  if (protocol === 58) return "icmpv6";
  if (!port) return protocol == null ? "" : "proto " + protocol;
  return window.PORT_SERVICES[port] || String(port);
};
