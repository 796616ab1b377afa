package broker

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/registry"
	"github.com/eclipse/paho.golang/paho"
)

// rawConn is an MQTT 3.1.1 client written by hand: the tests need to send
// CONNECTs at the same instant and to drop connections without DISCONNECT.
type rawConn struct {
	c net.Conn
	r *bufio.Reader
}

type will struct {
	topic, payload string
	qos            byte
	retain         bool
}

func mqttString(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

func remainingLength(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func packet(typeAndFlags byte, body []byte) []byte {
	return append(append([]byte{typeAndFlags}, remainingLength(len(body))...), body...)
}

func connectPacket(clientID string, w *will) []byte {
	flags := byte(0x02) // clean session
	body := append(mqttString("MQTT"), 4)
	var payload []byte
	payload = append(payload, mqttString(clientID)...)
	if w != nil {
		flags |= 0x04 | w.qos<<3
		if w.retain {
			flags |= 0x20
		}
		payload = append(payload, mqttString(w.topic)...)
		payload = append(payload, mqttString(w.payload)...)
	}
	body = append(body, flags, 0, 60)
	return packet(0x10, append(body, payload...))
}

func publishPacket(topic string, payload []byte, retain bool, id uint16) []byte {
	first := byte(0x32) // QoS 1
	if retain {
		first |= 0x01
	}
	body := append(mqttString(topic), byte(id>>8), byte(id))
	return packet(first, append(body, payload...))
}

// rawDial opens a TLS connection with the certificate of certOf.
func (e *env) rawDial(certOf string) *rawConn {
	e.t.Helper()
	c, err := tls.Dial("tcp", e.b.Addr(), &tls.Config{Certificates: []tls.Certificate{e.cert[certOf]}, RootCAs: e.ca.Pool(), ServerName: "localhost"})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &rawConn{c: c, r: bufio.NewReader(c)}
}

// readPacket reads one packet: its first byte and its body.
func (rc *rawConn) readPacket() (byte, []byte, error) {
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	first, err := rc.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mult := 0, 1
	for {
		d, err := rc.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mult
		if d&0x80 == 0 {
			break
		}
		mult *= 128
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(rc.r, body); err != nil {
		return 0, nil, err
	}
	return first, body, nil
}

// connect sends CONNECT and returns the CONNACK's return code.
func (rc *rawConn) connect(clientID string, w *will) (byte, error) {
	if _, err := rc.c.Write(connectPacket(clientID, w)); err != nil {
		return 0, err
	}
	first, body, err := rc.readPacket()
	if err != nil {
		return 0, err
	}
	if first != 0x20 || len(body) != 2 {
		return 0, fmt.Errorf("not a CONNACK: %#x % x", first, body)
	}
	return body[1], nil
}

// publish sends a QoS 1 PUBLISH and waits for its PUBACK.
func (rc *rawConn) publish(t *testing.T, topic string, payload []byte, retain bool) {
	t.Helper()
	if _, err := rc.c.Write(publishPacket(topic, payload, retain, 7)); err != nil {
		t.Fatal(err)
	}
	for {
		first, body, err := rc.readPacket()
		if err != nil {
			t.Fatalf("no PUBACK for %s: %v", topic, err)
		}
		if first == 0x40 && len(body) == 2 {
			return
		}
		// Something else first (a Jobs reply): read on.
	}
}

// waitGone waits until the broker has ended every connection with the
// client id (and so sent their wills).
func (e *env) waitGone(clientID string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.b.sessions.count(clientID) > 0 {
		if time.Now().After(deadline) {
			e.t.Fatalf("%d connections of %s are still served", e.b.sessions.count(clientID), clientID)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
}

// TestWillNeedsPublishRights: a Last Will is a publish the device makes
// later; as AWS IoT Core, the broker checks iot:Publish on its topic at
// CONNECT and refuses the connection (Not authorized) when the policy does
// not allow it, over MQTT 3.1.1 and 5.
func TestWillNeedsPublishRights(t *testing.T) {
	e := newEnv(t)
	for _, topic := range []string{"$aws/things/dev-2/jobs/notify-next", "$aws/things/dev-2/jobs/$next/get/accepted",
		"$aws/things/dev-2/jobs/start-next/accepted", "elsewhere/anything"} {
		rc := e.rawDial("dev-1")
		code, err := rc.connect("dev-1", &will{topic: topic, payload: `{"execution":{"jobId":"forged"}}`, qos: 1, retain: true})
		if err != nil || code != 0x05 {
			t.Fatalf("will on %s: CONNACK %#x, %v; want 0x05 (not authorized)", topic, code, err)
		}
		if _, _, err := rc.readPacket(); err == nil {
			t.Fatalf("will on %s: the refused connection stays open", topic)
		}
	}
	// MQTT 5: reason code 0x87.
	conn, err := tls.Dial("tcp", e.b.Addr(), &tls.Config{Certificates: []tls.Certificate{e.cert["dev-1"]}, RootCAs: e.ca.Pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: "dev-1", CleanStart: true, KeepAlive: 30,
		WillMessage: &paho.WillMessage{Topic: "$aws/things/dev-2/jobs/notify-next", Payload: []byte("{}"), QoS: 1, Retain: true}})
	if err == nil || ack == nil || ack.ReasonCode != 0x87 {
		t.Fatalf("MQTT 5 will on another thing: %+v %v; want reason 0x87", ack, err)
	}
	// A will within the policy is accepted (TestRetainedReservedTopicsRefused
	// sees one sent).
	rc := e.rawDial("dev-1")
	if code, err := rc.connect("dev-1", &will{topic: "$aws/things/dev-1/status", payload: "gone", qos: 1}); err != nil || code != 0 {
		t.Fatalf("will within the policy: CONNACK %#x, %v", code, err)
	}
}

// TestRetainedReservedTopicsRefused: AWS keeps no retained message on its
// reserved $aws/ topics. A retained publish there, from a device or a
// will, is delivered but not retained; elsewhere (where a policy allows a
// device to publish) retain works as MQTT says.
func TestRetainedReservedTopicsRefused(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
		{"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":["arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/*","arn:aws:iot:*:*:topic/fleet/*"]},
		{"Effect":"Allow","Action":"iot:Subscribe","Resource":["arn:aws:iot:*:*:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/*","arn:aws:iot:*:*:topicfilter/fleet/*"]}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.Policy = p })
	retained := func(topic string) bool { return len(e.b.srv.Topics.Messages(topic)) > 0 }

	rc := e.rawDial("dev-1")
	if code, err := rc.connect("dev-1", nil); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x, %v", code, err)
	}
	rc.publish(t, "$aws/things/dev-1/jobs/notify-next", []byte(`{"execution":{"jobId":"forged"}}`), true)
	rc.publish(t, "$aws/things/dev-1/jobs/get", []byte(`{}`), true)
	rc.publish(t, "$aws/things/dev-1/config", []byte(`v2`), true)
	rc.publish(t, "fleet/dev-1", []byte(`online`), true)
	for _, topic := range []string{"$aws/things/dev-1/jobs/notify-next", "$aws/things/dev-1/jobs/get", "$aws/things/dev-1/config"} {
		if retained(topic) {
			t.Errorf("a retained publish on the reserved %s was kept", topic)
		}
	}
	if !retained("fleet/dev-1") {
		t.Error("a retained publish outside $aws/ was not kept: the check above proves nothing")
	}
	rc.c.Close()
	e.waitGone("dev-1")

	// Wills: one on a reserved topic, one elsewhere.
	for _, w := range []*will{{topic: "$aws/things/dev-1/jobs/notify-next", payload: "forged", qos: 1, retain: true},
		{topic: "fleet/dev-1/lwt", payload: "offline", qos: 1, retain: true}} {
		rc := e.rawDial("dev-1")
		if code, err := rc.connect("dev-1", w); err != nil || code != 0 {
			t.Fatalf("will on %s: CONNACK %#x, %v", w.topic, code, err)
		}
		rc.c.Close() // no DISCONNECT: the will is sent
		e.waitGone("dev-1")
	}
	if retained("$aws/things/dev-1/jobs/notify-next") {
		t.Error("a retained will on a reserved topic was kept")
	}
	if !retained("fleet/dev-1/lwt") {
		t.Error("a retained will outside $aws/ was not kept (was it sent?)")
	}
}

// TestPayloadOverLimitCloses: a payload over 128 KB closes the connection,
// as on AWS IoT Core, even when the packet is within the packet limit
// (which leaves room for the topic and properties).
func TestPayloadOverLimitCloses(t *testing.T) {
	e := newEnv(t)
	rc := e.rawDial("dev-1")
	if code, err := rc.connect("dev-1", nil); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x, %v", code, err)
	}
	rc.publish(t, "$aws/things/dev-1/data", make([]byte, MaxPayload), false) // at the limit: PUBACK
	if _, err := rc.c.Write(publishPacket("$aws/things/dev-1/data", make([]byte, MaxPayload+1), false, 8)); err != nil {
		t.Fatal(err)
	}
	if first, body, err := rc.readPacket(); err == nil {
		t.Fatalf("a payload of %d bytes was answered %#x % x; want the connection closed", MaxPayload+1, first, body)
	}
	e.waitGone("dev-1")
}

// TestOneConnectionPerClientID sends 50 CONNECTs as one thing at the same
// instant, ten times: exactly one connection survives each round, the one
// in mochi's client list; then the certificate is made INACTIVE and every
// connection that presented it closes.
func TestOneConnectionPerClientID(t *testing.T) {
	const n, rounds = 50, 10
	e := newEnv(t)
	for round := 0; round < rounds; round++ {
		conns := make([]*rawConn, n)
		for i := range conns {
			conns[i] = e.rawDial("dev-1") // TLS handshakes done before the race
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		open := make([]chan struct{}, n) // closed when the connection ends
		for i, rc := range conns {
			open[i] = make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(open[i])
				<-start
				code, err := rc.connect("dev-1", nil)
				if err != nil || code != 0 {
					return // refused or closed before its CONNACK: not a survivor
				}
				for {
					rc.c.SetReadDeadline(time.Time{})
					if _, err := rc.r.ReadByte(); err != nil {
						return
					}
				}
			}()
		}
		close(start)
		alive := func() (n int, which int) {
			for i, c := range open {
				select {
				case <-c:
				default:
					n, which = n+1, i
				}
			}
			return n, which
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			k, which := alive()
			if k == 1 && e.b.sessions.count("dev-1") == 1 {
				cur, ok := e.b.srv.Clients.Get("dev-1")
				if !ok || cur.Net.Conn.RemoteAddr().String() != conns[which].c.LocalAddr().String() {
					t.Fatalf("round %d: the surviving connection is not the one in the client list", round)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d of %d connections with one client id still open (broker: %d); want 1", round, k, n, e.b.sessions.count("dev-1"))
			}
			time.Sleep(time.Millisecond) // polling with a deadline
		}
		if round < rounds-1 {
			for _, rc := range conns {
				rc.c.Close()
			}
			wg.Wait()
			e.waitGone("dev-1")
			continue
		}
		// Deactivation drops every connection that presented the
		// certificate.
		if err := e.reg.UpdateCertificateStatus(e.ids["dev-1"], registry.StatusInactive); err != nil {
			t.Fatal(err)
		}
		if got := e.b.DisconnectCertificate(e.ids["dev-1"]); got != 1 {
			t.Errorf("DisconnectCertificate dropped %d connections, want 1", got)
		}
		wg.Wait() // every reader saw its connection end
		e.waitGone("dev-1")
	}
}

// TestDeactivationReachesConnectionsBeingEstablished: connections that
// presented a certificate and are still between authentication and their
// CONNACK are closed by its deactivation too.
func TestDeactivationReachesConnectionsBeingEstablished(t *testing.T) {
	e := newEnv(t)
	// A connection whose CONNECT is authorised, then held before its
	// session is established: another connection with its client id holds
	// the id's lock.
	first := e.rawDial("dev-1")
	if code, err := first.connect("dev-1", nil); err != nil || code != 0 {
		t.Fatal(code, err)
	}
	// The CONNACK goes out before the session's lock is released: wait
	// for that.
	var held *session
	deadline := time.Now().Add(10 * time.Second)
	for held == nil {
		e.b.sessions.mu.Lock()
		for _, se := range e.b.sessions.conns {
			if se.established && se.held == nil {
				held = se
			}
		}
		e.b.sessions.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the first connection's session was never established")
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
	// Hold dev-1's lock as a connection in the middle of its takeover would.
	e.b.sessions.lock(held.cl)
	second := e.rawDial("dev-1")
	if _, err := second.c.Write(connectPacket("dev-1", nil)); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for len(e.b.sessions.ofCertificate(e.ids["dev-1"])) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the second connection was never recorded")
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
	e.reg.UpdateCertificateStatus(e.ids["dev-1"], registry.StatusRevoked)
	if got := e.b.DisconnectCertificate(e.ids["dev-1"]); got != 2 {
		t.Errorf("DisconnectCertificate dropped %d connections, want 2 (one still connecting)", got)
	}
	e.b.sessions.mu.Lock()
	e.b.sessions.unlockLocked(held.cl.Net.Conn)
	e.b.sessions.mu.Unlock()
	for i, rc := range []*rawConn{first, second} {
		for {
			_, _, err := rc.readPacket()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection %d of the revoked certificate is still open", i+1)
			}
			if err != nil {
				break
			}
		}
	}
	e.waitGone("dev-1")
}
