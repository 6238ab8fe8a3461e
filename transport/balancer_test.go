package transport

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
)

func members(names ...string) []kafka.GroupMember {
	var ms []kafka.GroupMember
	for i, n := range names {
		// Member ids deliberately sort opposite to the names.
		ms = append(ms, kafka.GroupMember{ID: fmt.Sprintf("m%02d", 99-i), Topics: []string{"t"}, UserData: []byte(n)})
	}
	return ms
}

func parts(topic string, n int) []kafka.Partition {
	var ps []kafka.Partition
	for i := n - 1; i >= 0; i-- { // any order
		ps = append(ps, kafka.Partition{Topic: topic, ID: i})
	}
	return ps
}

// byName renders an assignment as name:partitions in name order.
func byName(ms []kafka.GroupMember, a kafka.GroupMemberAssignments, topic string) string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s:%v", m.UserData, a[m.ID][topic]))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func TestInstanceBalancerAssignsByName(t *testing.T) {
	var b InstanceBalancer
	ms := members("detect-2", "detect-0", "detect-1")
	got := byName(ms, b.AssignGroups(ms, parts("t", 8)), "t")
	if want := "detect-0:[0 1] detect-1:[2 3 4] detect-2:[5 6 7]"; got != want {
		t.Fatalf("assignment %s, want %s", got, want)
	}
	// A restart gives every member a new id: the same names get the same
	// partitions whatever the ids and their order.
	again := members("detect-1", "detect-2", "detect-0")
	if got2 := byName(again, b.AssignGroups(again, parts("t", 8)), "t"); got2 != got {
		t.Fatalf("after new member ids %s, want %s", got2, got)
	}
	// With detect-1 gone the others keep what they had.
	two := members("detect-0", "detect-2")
	if got := byName(two, b.AssignGroups(two, parts("t", 8)), "t"); got != "detect-0:[0 1 2 3] detect-2:[4 5 6 7]" {
		t.Fatalf("two members: %s", got)
	}
	// More members than partitions: each partition once, the rest idle
	// with an empty assignment.
	many := members("a", "b", "c")
	a := b.AssignGroups(many, parts("t", 2))
	if got := byName(many, a, "t"); got != "a:[] b:[0] c:[1]" {
		t.Fatalf("3 members, 2 partitions: %s", got)
	}
	if len(a) != 3 {
		t.Fatalf("%d members assigned, want all 3", len(a))
	}
	// Same names (two instances on one host left unnamed): still every
	// partition exactly once.
	dup := members("h", "h", "h")
	seen := map[int]int{}
	for _, tp := range b.AssignGroups(dup, parts("t", 7)) {
		for _, p := range tp["t"] {
			seen[p]++
		}
	}
	for p := range 7 {
		if seen[p] != 1 {
			t.Fatalf("partition %d assigned %d times with equal names", p, seen[p])
		}
	}
	// Members subscribed to different topics only get their own topic's.
	mixed := []kafka.GroupMember{
		{ID: "x", Topics: []string{"t"}, UserData: []byte("b")},
		{ID: "y", Topics: []string{"t", "u"}, UserData: []byte("a")},
	}
	am := b.AssignGroups(mixed, append(parts("t", 2), parts("u", 2)...))
	if fmt.Sprint(am["x"]) != "map[t:[1]]" || fmt.Sprint(am["y"]) != "map[t:[0] u:[0 1]]" {
		t.Fatalf("mixed subscriptions: x %v y %v", am["x"], am["y"])
	}
}

// On the real broker: three named consumers get their ranges by name; one
// restarting (a new member id) gets its own partitions back.
func TestInstanceBalancerOnBroker(t *testing.T) {
	cfg := kafkaConfig(t, testenv.Kafka(t))
	cfg.Partitions = 6
	cfg.HeartbeatInterval = 250 * time.Millisecond
	cfg.SessionTimeout = 6 * time.Second
	topic := uniqueTopic(t, "flows")
	group := "test-" + topic
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := EnsureTopics(ctx, cfg, topic); err != nil {
		t.Fatal(err)
	}
	readers := map[string]*KafkaReader{}
	start := func(name string) {
		c := cfg
		c.Instance = name
		readers[name] = NewKafkaReader(c, topic, group, nil)
	}
	defer func() {
		for _, r := range readers {
			r.Close()
		}
	}()
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 10 * time.Second}
	// wait returns name:partitions once the group is stable with n members.
	wait := func(n int) string {
		var last string
		for ctx.Err() == nil {
			resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
			if err == nil && len(resp.Groups) == 1 && resp.Groups[0].GroupState == "Stable" && len(resp.Groups[0].Members) == n {
				var out []string
				total := 0
				for _, m := range resp.Groups[0].Members {
					var ps []int
					for _, tp := range m.MemberAssignments.Topics {
						ps = append(ps, tp.Partitions...)
					}
					slices.Sort(ps)
					total += len(ps)
					out = append(out, fmt.Sprintf("%s:%v", m.MemberMetadata.UserData, ps))
				}
				slices.Sort(out)
				last = strings.Join(out, " ")
				if total == cfg.Partitions {
					return last
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("group %s not stable with %d members (last %q): %v", group, n, last, ctx.Err())
		return ""
	}
	for _, n := range []string{"detect-2", "detect-0", "detect-1"} {
		start(n)
	}
	want := "detect-0:[0 1] detect-1:[2 3] detect-2:[4 5]"
	if got := wait(3); got != want {
		t.Fatalf("three instances: %s, want %s", got, want)
	}
	readers["detect-1"].Close()
	delete(readers, "detect-1")
	if got := wait(2); got != "detect-0:[0 1 2] detect-2:[3 4 5]" {
		t.Fatalf("detect-1 stopped: %s", got)
	}
	start("detect-1")
	if got := wait(3); got != want {
		t.Fatalf("detect-1 restarted: %s, want %s", got, want)
	}
}
