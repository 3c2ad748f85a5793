// The HTTP side of libvmmclient (see vmmclient.h).
#pragma once

#include "client/vmmclient.h"

namespace vmm::client {

Result<std::unique_ptr<Connection>> connectHttp(const std::string& uri, const ConnectOptions& options);

}  // namespace vmm::client
