#include "network/direct/macvtap_link.h"

#include <linux/if_link.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/macvlan.h>
#include <netlink/route/link/macvtap.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cstring>
#include <memory>

#include "base/strings.h"

namespace vmm::net {

namespace {

constexpr int kReceiveTimeoutSeconds = 5;

struct SockFree { void operator()(nl_sock* s) const { nl_socket_free(s); } };
struct LinkPut { void operator()(rtnl_link* l) const { rtnl_link_put(l); } };
struct CacheFree { void operator()(nl_cache* c) const { nl_cache_free(c); } };
struct AddrPut { void operator()(nl_addr* a) const { nl_addr_put(a); } };
using Sock = std::unique_ptr<nl_sock, SockFree>;
using Link = std::unique_ptr<rtnl_link, LinkPut>;

Error netlinkError(const std::string& what, int nlErr) {
  std::string msg = what + ": " + nl_geterror(nlErr);
  switch (nlErr < 0 ? -nlErr : nlErr) {
    case NLE_EXIST: return conflict(msg);
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV: return notFound(msg);
    case NLE_PERM: return permissionDenied(msg);
    default: return internalError(msg);
  }
}

Result<Sock> connectRoute() {
  Sock sock(nl_socket_alloc());
  if (!sock) return internalError("cannot allocate a netlink socket");
  if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0) return netlinkError("connecting to rtnetlink", err);
  timeval tv{kReceiveTimeoutSeconds, 0};
  ::setsockopt(nl_socket_get_fd(sock.get()), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return sock;
}

uint32_t kernelMode(model::DirectMode mode) {
  switch (mode) {
    case model::DirectMode::vepa: return MACVLAN_MODE_VEPA;
    case model::DirectMode::bridge: return MACVLAN_MODE_BRIDGE;
    case model::DirectMode::private_: return MACVLAN_MODE_PRIVATE;
    case model::DirectMode::passthrough: return MACVLAN_MODE_PASSTHRU;
  }
  return MACVLAN_MODE_VEPA;
}

bool modeFromKernel(uint32_t mode, model::DirectMode& out) {
  switch (mode) {
    case MACVLAN_MODE_VEPA: out = model::DirectMode::vepa; return true;
    case MACVLAN_MODE_BRIDGE: out = model::DirectMode::bridge; return true;
    case MACVLAN_MODE_PRIVATE: out = model::DirectMode::private_; return true;
    case MACVLAN_MODE_PASSTHRU: out = model::DirectMode::passthrough; return true;
    default: return false;
  }
}

}  // namespace

Result<int> addMacvtapLink(const MacvtapLinkSpec& spec) {
  VMM_ASSIGN(auto sock, connectRoute());
  Link link(rtnl_link_macvtap_alloc());
  if (!link) return internalError("cannot allocate a macvtap link object");
  rtnl_link_set_name(link.get(), spec.name.c_str());
  rtnl_link_set_link(link.get(), spec.lowerIndex);
  if (int err = rtnl_link_macvtap_set_mode(link.get(), kernelMode(spec.mode)); err < 0)
    return netlinkError("setting the macvtap mode", err);
  nl_addr* parsed = nullptr;
  if (int err = nl_addr_parse(spec.mac.c_str(), AF_LLC, &parsed); err < 0)
    return invalidArgument("bad MAC address " + quote(spec.mac));
  std::unique_ptr<nl_addr, AddrPut> addr(parsed);
  rtnl_link_set_addr(link.get(), addr.get());
  if (spec.mtu) rtnl_link_set_mtu(link.get(), spec.mtu);
  rtnl_link_set_flags(link.get(), IFF_UP);
  if (int err = rtnl_link_add(sock.get(), link.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0)
    return netlinkError("creating macvtap " + spec.name, err);
  unsigned index = if_nametoindex(spec.name.c_str());
  if (index == 0) return internalError("macvtap " + spec.name + " vanished right after it was created");
  return static_cast<int>(index);
}

Result<std::vector<StackedLink>> linksStackedOn(int lowerIndex) {
  VMM_ASSIGN(auto sock, connectRoute());
  nl_cache* raw = nullptr;
  if (int err = rtnl_link_alloc_cache(sock.get(), AF_UNSPEC, &raw); err < 0) return netlinkError("listing links", err);
  std::unique_ptr<nl_cache, CacheFree> cache(raw);
  std::vector<StackedLink> out;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* l = reinterpret_cast<rtnl_link*>(obj);
    if (rtnl_link_get_link(l) != lowerIndex || rtnl_link_get_ifindex(l) == lowerIndex) continue;
    int32_t netnsid = 0;
    if (rtnl_link_get_link_netnsid(l, &netnsid) == 0) continue;  // its lower lives in another namespace
    StackedLink s;
    if (rtnl_link_is_macvtap(l)) {
      s.kind = "macvtap";
      s.modeKnown = modeFromKernel(rtnl_link_macvtap_get_mode(l), s.mode);
    } else if (rtnl_link_is_macvlan(l)) {
      s.kind = "macvlan";
      s.modeKnown = modeFromKernel(rtnl_link_macvlan_get_mode(l), s.mode);
    } else {
      continue;
    }
    s.name = rtnl_link_get_name(l);
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::string> linkKind(const std::string& name) {
  VMM_ASSIGN(auto sock, connectRoute());
  rtnl_link* raw = nullptr;
  if (int err = rtnl_link_get_kernel(sock.get(), 0, name.c_str(), &raw); err < 0)
    return netlinkError("looking up link " + name, err);
  Link link(raw);
  const char* kind = rtnl_link_get_type(link.get());
  return std::string(kind ? kind : "");
}

Status deleteLinkByName(const std::string& name) {
  VMM_ASSIGN(auto sock, connectRoute());
  Link link(rtnl_link_alloc());
  if (!link) return internalError("cannot allocate a link object");
  rtnl_link_set_name(link.get(), name.c_str());
  if (int err = rtnl_link_delete(sock.get(), link.get()); err < 0) return netlinkError("deleting link " + name, err);
  return {};
}

}  // namespace vmm::net
