package transport

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestWriterSurvivesBrokerOutage: the broker drops every produce request for
// a while (connection closed, as when it restarts); Write keeps retrying with
// backoff, counts the retries, and once the broker is back every accepted
// record is there.
func TestWriterSurvivesBrokerOutage(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := kafkaConfig(t, strings.Join(c.ListenAddrs(), ","))
	cfg.RetryBackoffMin = 10 * time.Millisecond
	cfg.RetryBackoffMax = 50 * time.Millisecond
	topic := "outage.flows"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := EnsureTopics(ctx, cfg, topic); err != nil {
		t.Fatal(err)
	}

	var dropped atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if dropped.Add(1) <= 12 {
			c.KeepControl()
			return nil, errors.New("simulated broker outage"), true
		}
		return nil, nil, false // back to normal
	})
	retriesBefore := counterValue(metRetries.WithLabelValues("write"))
	produceFlows(t, cfg, topic, 0, 300)
	if dropped.Load() <= 12 {
		t.Fatalf("only %d produce requests seen; outage not exercised", dropped.Load())
	}
	if r := counterValue(metRetries.WithLabelValues("write")) - retriesBefore; r < 1 {
		t.Fatalf("retries metric grew by %v, want >= 1", r)
	}

	r := NewKafkaReader(cfg, topic, cfg.GroupID("outage"), nil)
	defer r.Close()
	seen := newSeenSet()
	for seen.count() < 300 {
		batch, err := r.Fetch(ctx)
		if err != nil {
			t.Fatalf("after %d records: %v", seen.count(), err)
		}
		for _, m := range batch {
			seen.add(m)
		}
	}
	if seen.bad != nil {
		t.Fatal(seen.bad)
	}
}

// TestWriterGivesUpOnCancel: with the broker never accepting, Write returns
// once its context ends, reporting the cause.
func TestWriterGivesUpOnCancel(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := kafkaConfig(t, strings.Join(c.ListenAddrs(), ","))
	if err := EnsureTopics(context.Background(), cfg, "dead.flows"); err != nil {
		t.Fatal(err)
	}
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, errors.New("down"), true
	})
	w := NewKafkaWriter(cfg, "dead.flows", nil)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = w.Write(ctx, []Message{{Value: mustMarshal(sampleFlow(1))}})
	if err == nil {
		t.Fatal("Write succeeded against a broker that accepts nothing")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Write took %v to give up after its context ended", d)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
