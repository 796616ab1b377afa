package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// JobsRequestFilter is what the Jobs service subscribes to on an external
// broker: every thing's jobs topics (it ignores all but the requests).
const JobsRequestFilter = "$aws/things/+/jobs/#"

// DefaultExternalClientID is the Jobs service's client id on an external
// broker.
const DefaultExternalClientID = "awsfota-jobs"

// ExternalConfig attaches the Jobs service to another MQTT broker.
type ExternalConfig struct {
	// Addr is host:port of the broker's MQTT-over-TLS listener.
	Addr string
	// TLS holds the service's client certificate and the roots that verify
	// the broker; ServerName defaults to Addr's host.
	TLS *tls.Config
	// ClientID defaults to DefaultExternalClientID.
	ClientID string
	Jobs     JobsAPI
	Logger   *slog.Logger
}

// External is the Jobs service attached to an external broker as a
// privileged client. The broker, not awsfota, decides there who may connect
// and which topics a device may use (configure its ACL to confine each
// device to its own $aws/things/<thing>/); the service trusts the thing name
// in the topic of a request and publishes its replies to the reply topics,
// which the broker routes to their subscribers — devices must subscribe to
// them (iotjobs.DeviceFilters), as on any broker but AWS's.
type External struct {
	cm     *autopaho.ConnectionManager
	cancel context.CancelFunc
	log    *slog.Logger
	wg     sync.WaitGroup

	mu    sync.Mutex
	queue []jobsvc.Message
	more  chan struct{} // something was queued
}

// Attach connects to the external broker, subscribes to every thing's jobs
// requests and returns once that subscription is in place (or ctx ends).
// It keeps reconnecting (and resubscribing) until Close.
func Attach(ctx context.Context, cfg ExternalConfig) (*External, error) {
	if cfg.Jobs == nil || cfg.TLS == nil {
		return nil, errors.New("broker: attaching to an external broker needs the jobs API and a TLS configuration")
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("broker: external broker address %q: use host:port (%v)", cfg.Addr, err)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = DefaultExternalClientID
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tlsCfg := cfg.TLS.Clone()
	if tlsCfg.ServerName == "" {
		tlsCfg.ServerName = host
	}
	runCtx, cancel := context.WithCancel(context.Background())
	x := &External{cancel: cancel, log: log, more: make(chan struct{}, 1)}
	subscribed := make(chan error, 1)
	u := &url.URL{Scheme: "mqtts", Host: cfg.Addr}
	pc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		ConnectTimeout:                10 * time.Second,
		ReconnectBackoff:              autopaho.NewConstantBackoff(time.Second),
		AttemptConnection: func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			var d net.Dialer
			raw, err := d.DialContext(ctx, "tcp", u.Host)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(raw, tlsCfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			return packets.NewThreadSafeConn(tc), nil
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			x.wg.Add(1)
			go func() {
				defer x.wg.Done()
				err := subscribe(runCtx, cm)
				if err != nil {
					log.Error("the jobs service cannot subscribe on the external broker", "broker", cfg.Addr, "err", err)
				} else {
					log.Info("jobs service attached to the external broker", "broker", cfg.Addr)
				}
				select {
				case subscribed <- err:
				default:
				}
			}()
		},
		OnConnectError: func(err error) {
			log.Warn("connecting to the external broker failed", "broker", cfg.Addr, "err", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID: cfg.ClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				if thing, ok := thingOf(pr.Packet.Topic); ok {
					cfg.Jobs.HandleDevice(thing, "", pr.Packet.Topic, pr.Packet.Payload)
				}
				return true, nil
			}},
		},
	}
	x.cm, err = autopaho.NewConnection(runCtx, pc)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("broker: %w", err)
	}
	x.wg.Add(1)
	go func() { defer x.wg.Done(); x.send(runCtx) }()
	select {
	case err := <-subscribed:
		if err == nil {
			return x, nil
		}
		x.Close()
		return nil, fmt.Errorf("broker: the external broker at %s refused the jobs service's subscription to %s: allow its client (%s) to read and write $aws/things/# (%w)", cfg.Addr, JobsRequestFilter, cfg.ClientID, err)
	case <-ctx.Done():
		x.Close()
		return nil, fmt.Errorf("broker: the jobs service could not attach to the external broker at %s: check the address, that it trusts the local CA and accepts the service's certificate (%w)", cfg.Addr, ctx.Err())
	}
}

func subscribe(ctx context.Context, cm *autopaho.ConnectionManager) error {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ack, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: JobsRequestFilter, QoS: 1, NoLocal: true}}})
	if err != nil {
		return err
	}
	if len(ack.Reasons) != 1 || ack.Reasons[0] >= 0x80 {
		return fmt.Errorf("SUBACK reason codes %v", ack.Reasons)
	}
	return nil
}

// thingOf returns the thing of a $aws/things/<thing>/jobs/... topic.
func thingOf(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, "$aws/things/")
	if !ok {
		return "", false
	}
	thing, rest, ok := strings.Cut(rest, "/")
	return thing, ok && thing != "" && strings.HasPrefix(rest, "jobs/")
}

// Publish queues a Jobs service message for the external broker. A reply
// (ClientID set) is published to its topic like any message: the external
// broker cannot address one connection.
func (x *External) Publish(m jobsvc.Message) {
	x.mu.Lock()
	x.queue = append(x.queue, m)
	x.mu.Unlock()
	select {
	case x.more <- struct{}{}:
	default:
	}
}

// send publishes the queued messages in order, at QoS 1; a message that
// cannot be sent while the connection is down is dropped (devices re-ask).
func (x *External) send(ctx context.Context) {
	for {
		x.mu.Lock()
		batch := x.queue
		x.queue = nil
		x.mu.Unlock()
		for _, m := range batch {
			_, err := x.cm.Publish(ctx, &paho.Publish{Topic: m.Topic, QoS: 1, Payload: m.Payload})
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				x.log.Warn("publishing to the external broker failed", "topic", m.Topic, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-x.more:
		}
	}
}

// Close disconnects from the external broker and stops.
func (x *External) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := x.cm.Disconnect(ctx)
	x.cancel()
	<-x.cm.Done()
	x.wg.Wait()
	if errors.Is(err, autopaho.ConnectionDownError) {
		err = nil
	}
	return err
}
