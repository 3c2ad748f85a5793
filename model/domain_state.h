// The runtime state of a domain as the API reports it.
#pragma once

#include <string>

#include "model/json_reader.h"

namespace vmm::model {

enum class DomainState {
  shutoff,   // not running
  starting,  // a start is in progress
  running,
  paused,    // suspended by a request, or by the hypervisor (reason says which)
  stopping,  // a shutdown is in progress
  crashed,   // stopped unexpectedly and kept for inspection (on_crash = preserve)
};

inline const EnumTable<DomainState> kDomainStates = {
    {DomainState::shutoff, "shutoff"},   {DomainState::starting, "starting"}, {DomainState::running, "running"},
    {DomainState::paused, "paused"},     {DomainState::stopping, "stopping"}, {DomainState::crashed, "crashed"}};

inline std::string stateName(DomainState s) { return std::string(enumName(kDomainStates, s)); }
inline bool isActive(DomainState s) { return s != DomainState::shutoff && s != DomainState::crashed; }

}  // namespace vmm::model
