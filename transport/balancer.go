package transport

import (
	"cmp"
	"os"
	"slices"

	"github.com/segmentio/kafka-go"
)

// InstanceBalancer assigns partitions to consumer-group members by a stable
// instance name instead of the member id the broker makes up at every join.
//
// Detector state lives with the partitions a detect instance consumes (it is
// keyed by device, and records by device), checkpointed to the instance's own
// file. kafka-go's range and round-robin balancers order members by member
// id, a fresh random string after every restart, so restarting one instance
// reshuffles the partitions, and the state, of all of them. Ordering by
// instance name (a StatefulSet's pod name, the host name) gives every
// partition back to the same instance after a restart, and when one instance
// is gone the others keep their own partitions and split its range between
// its neighbours.
type InstanceBalancer struct {
	Instance string // carried to the group leader in the join metadata
}

// InstanceProtocol is the group protocol name of InstanceBalancer.
const InstanceProtocol = "exfilwatch-instance-range"

// ProtocolName implements kafka.GroupBalancer.
func (InstanceBalancer) ProtocolName() string { return InstanceProtocol }

// UserData implements kafka.GroupBalancer.
func (b InstanceBalancer) UserData() ([]byte, error) { return []byte(b.Instance), nil }

// AssignGroups implements kafka.GroupBalancer: per topic, the members
// subscribed to it, ordered by instance name (member id breaks ties), get
// consecutive ranges of the partitions ordered by id, as in the range
// balancer.
func (InstanceBalancer) AssignGroups(members []kafka.GroupMember, partitions []kafka.Partition) kafka.GroupMemberAssignments {
	out := kafka.GroupMemberAssignments{}
	byTopic := map[string][]int{}
	for _, p := range partitions {
		byTopic[p.Topic] = append(byTopic[p.Topic], p.ID)
	}
	sorted := slices.Clone(members)
	slices.SortFunc(sorted, func(a, b kafka.GroupMember) int {
		return cmp.Or(cmp.Compare(string(a.UserData), string(b.UserData)), cmp.Compare(a.ID, b.ID))
	})
	for topic, ids := range byTopic {
		slices.Sort(ids)
		var subs []string
		for _, m := range sorted {
			if slices.Contains(m.Topics, topic) {
				subs = append(subs, m.ID)
			}
		}
		for i, id := range subs {
			lo, hi := i*len(ids)/len(subs), (i+1)*len(ids)/len(subs)
			if out[id] == nil {
				out[id] = map[string][]int{}
			}
			out[id][topic] = append([]int{}, ids[lo:hi]...)
		}
	}
	// Members without partitions still get an (empty) assignment.
	for _, m := range members {
		if out[m.ID] == nil {
			out[m.ID] = map[string][]int{}
		}
	}
	return out
}

// instanceName is cfg.Instance, or the host name when unset.
func instanceName(cfg Config) string {
	if cfg.Instance != "" {
		return cfg.Instance
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return ""
}
