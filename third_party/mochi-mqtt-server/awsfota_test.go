// SPDX-License-Identifier: MIT

// Tests of the changes awsfota made to mochi-mqtt (AWSFOTA.md).

package mqtt

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
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
