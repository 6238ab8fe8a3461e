package transport

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
)

// StartEmbedded starts an in-process, in-memory Kafka-compatible broker
// (franz-go's kfake) on a random loopback port, for the zero-setup demo and
// for tests. It speaks the Kafka protocol, so the same KafkaReader,
// KafkaWriter and EnsureTopics code runs against it. Data is lost on stop.
// The broker stops when stop is called or ctx is done.
func StartEmbedded(ctx context.Context) (bootstrap string, stop func(), err error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0))
	if err != nil {
		return "", nil, fmt.Errorf("start embedded kafka: %w", err)
	}
	var once sync.Once
	stop = func() { once.Do(c.Close) }
	context.AfterFunc(ctx, stop)
	return strings.Join(c.ListenAddrs(), ","), stop, nil
}
