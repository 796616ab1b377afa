// SPDX-License-Identifier: MIT

// Tests of the changes awsfota made to mochi-mqtt (AWSFOTA.md).

package mqtt

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"
	"github.com/stretchr/testify/require"
)

func TestSysTopicsOff(t *testing.T) {
	s := New(&Options{Logger: logger, SysTopicResendInterval: -1})
	require.Nil(t, s.loop.sysTopics)
	require.NoError(t, s.Serve())
	defer s.Close()
	require.Equal(t, 0, s.Topics.Retained.Len(), "no $SYS topic is retained")
	// A subscription with a wildcard finds nothing to scan.
	require.Empty(t, s.Topics.Messages("$SYS/#"))

	on := New(&Options{Logger: logger})
	require.NotNil(t, on.loop.sysTopics)
	require.NoError(t, on.Serve())
	defer on.Close()
	require.NotZero(t, on.Topics.Retained.Len(), "by default $SYS topics are retained")
}

func TestClearExpiredClientsKeepsATakeover(t *testing.T) {
	s := New(nil)
	n := time.Now().Unix()
	old, _, _ := newTestClient()
	old.ID = "thing"
	old.State.disconnected = n - 100
	old.State.cancelOpen()
	old.Properties.ProtocolVersion = 5
	old.Properties.Props.SessionExpiryInterval = 1
	old.Properties.Props.SessionExpiryIntervalFlag = true
	s.Clients.Add(old)
	require.Equal(t, []*Client{old}, s.Clients.stopped())

	// A new connection took the id after the expired client was collected.
	stopped := s.Clients.stopped()
	live, _, _ := newTestClient()
	live.ID = "thing"
	s.Clients.Add(live)
	s.Clients.deleteIf("thing", stopped[0])
	got, ok := s.Clients.Get("thing")
	require.True(t, ok)
	require.Same(t, live, got)
	require.Empty(t, s.Clients.stopped(), "a live client is not collected")

	s.Clients.Add(old)
	s.clearExpiredClients(n)
	_, ok = s.Clients.Get("thing")
	require.False(t, ok, "the expired client is removed")
}

// A topic tree leaf holds its subscriptions without a map, and a node that
// only leads to others holds no subscription set's map at all.
func TestParticlesAllocateLazily(t *testing.T) {
	x := NewTopicsIndex()
	x.Subscribe("cl1", packets.Subscription{Filter: "$aws/things/t1/jobs/notify-next"})
	leaf := x.seek("$aws/things/t1/jobs/notify-next", 0)
	require.NotNil(t, leaf)
	require.Nil(t, leaf.subscriptions.internal)
	require.Len(t, leaf.subscriptions.small, 1)
	require.Nil(t, leaf.particles.internal)
	require.Nil(t, leaf.shared.internal)
	require.Nil(t, leaf.inlineSubscriptions.internal)
	mid := x.seek("$aws/things/t1", 0)
	require.Equal(t, 0, mid.subscriptions.Len())
	require.Nil(t, mid.subscriptions.small)
	require.Equal(t, 1, mid.particles.len())

	subs := x.Subscribers("$aws/things/t1/jobs/notify-next")
	require.Contains(t, subs.Subscriptions, "cl1")
	require.True(t, x.Unsubscribe("$aws/things/t1/jobs/notify-next", "cl1"))
	require.Nil(t, x.seek("$aws/things/t1", 0), "the emptied branch is trimmed")
}

// readTopics reads n QoS 0 PUBLISH packets from r and returns their topics.
func readTopics(t *testing.T, r io.Reader, n int) []string {
	br := bufio.NewReader(r)
	var topics []string
	for k := 0; k < n; k++ {
		h, err := br.ReadByte()
		require.NoError(t, err)
		require.Equal(t, byte(0x30), h, "a QoS 0 PUBLISH")
		size, mul := 0, 1
		for {
			b, err := br.ReadByte()
			require.NoError(t, err)
			size += int(b&0x7f) * mul
			mul *= 128
			if b < 0x80 {
				break
			}
		}
		body := make([]byte, size)
		_, err = io.ReadFull(br, body)
		require.NoError(t, err)
		l := int(body[0])<<8 | int(body[1])
		topics = append(topics, string(body[2:2+l]))
	}
	return topics
}

// A connection has no writer goroutine while nothing is queued for it; one
// runs while packets are queued, from any number of publishers, and writes
// each once, in the order each publisher queued them.
func TestWriterRunsWhileQueued(t *testing.T) {
	s := newServer()
	r, w := net.Pipe()
	defer r.Close()
	cl := newClient(w, &ops{info: new(system.Info), hooks: new(Hooks), log: logger, options: &Options{
		Capabilities: &Capabilities{ReceiveMaximum: 10, MaximumInflight: 5, MaximumClientWritesPending: 1000, maximumPacketID: 10},
	}})
	defer cl.Stop(nil)
	cl.ID = "dev"
	cl.Properties.ProtocolVersion = 4
	require.False(t, cl.State.writing.Load(), "no writer before anything is queued")

	for round := 0; round < 3; round++ {
		const publishers, each = 4, 50
		var wg sync.WaitGroup
		for p := 0; p < publishers; p++ {
			wg.Add(1)
			go func(p int) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: fmt.Sprintf("t/%d/%d", p, i)}
					_, err := s.publishToClient(cl, packets.Subscription{Filter: "t/#"}, pk)
					require.NoError(t, err)
				}
			}(p)
		}
		require.NoError(t, r.SetReadDeadline(time.Now().Add(10*time.Second))) // nothing written: fail, not hang
		topics := readTopics(t, r, publishers*each)
		wg.Wait()
		next := make([]int, publishers)
		for _, topic := range topics {
			var p, i int
			_, err := fmt.Sscanf(topic, "t/%d/%d", &p, &i)
			require.NoError(t, err)
			require.Equal(t, next[p], i, "round %d: publisher %d's packets in order", round, p)
			next[p]++
		}
		// The writer ends once the queue is empty.
		deadline := time.Now().Add(5 * time.Second)
		for cl.State.writing.Load() {
			require.True(t, time.Now().Before(deadline), "the writer is still running with nothing queued")
			time.Sleep(time.Millisecond) // polling with a deadline, not synchronising
		}
		require.Zero(t, len(cl.State.outbound))
		require.Zero(t, cl.State.outboundQty)
	}
}

// With nothing retained a subscription gets nothing, and once a message is
// retained it gets that message (the shortcut must not hide it): the first
// bytes the client receives are that message.
func TestPublishRetainedOnlyWhenRetained(t *testing.T) {
	s := newServer()
	cl, r, w := newTestClient()
	defer w.Close()
	s.Clients.Add(cl)
	require.True(t, s.Topics.Subscribe(cl.ID, packets.Subscription{Filter: "a/+/c", Qos: 1}))
	require.Equal(t, 0, s.Topics.Retained.Len())
	s.publishRetainedToClient(cl, packets.Subscription{Filter: "a/+/c"}, false)
	s.Topics.RetainMessage(*packets.TPacketData[packets.Publish].Get(packets.TPublishRetainMqtt5).Packet)
	s.publishRetainedToClient(cl, packets.Subscription{Filter: "a/+/c"}, false)
	want := packets.TPacketData[packets.Publish].Get(packets.TPublishRetain).RawBytes
	got := make([]byte, len(want))
	_, err := io.ReadFull(r, got)
	require.NoError(t, err)
	require.Equal(t, want, got, "only the message retained before the second subscription")
}
