package emu

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/awsfota/awsfota/iotjobs"
)

// BenchmarkFleetLoad measures the local cloud under a fleet: N simulated
// devices (AWSFOTA_LOAD_DEVICES, default 1000), each a plain paho MQTT
// client on its own mutual-TLS connection, run a job to completion
// (notify-next → start-next → update SUCCEEDED) against a cloud running in
// a separate process, so that the server's peak RSS is its own. Provisioning
// goes through the AWS IoT API with the official SDK; every iteration
// creates one job on a thing group holding the whole fleet.
//
//	go test -run '^$' -bench FleetLoad -benchtime 1x ./cloud/emu/
//
// It reports executions/s (job creation to the last SUCCEEDED, as the
// devices see it) and server-peak-RSS-MB (the server's VmHWM).
func BenchmarkFleetLoad(b *testing.B) {
	n := 1000
	if v := os.Getenv("AWSFOTA_LOAD_DEVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("AWSFOTA_LOAD_DEVICES=%q: use a positive number", v)
		}
	}
	srv := startLoadServer(b)
	defer srv.stop(b)
	ep := srv.ep
	ic := iotClient(ep)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	// Provisioning: things with certificates, in one thing group.
	if _, err := ic.CreateThingGroup(ctx, &iot.CreateThingGroupInput{ThingGroupName: aws.String("fleet")}); err != nil {
		b.Fatal(err)
	}
	type creds struct{ certPEM, keyPEM string }
	all := make([]creds, n)
	parallel(b, n, 16, func(i int) error {
		name := fmt.Sprintf("load-%05d", i)
		if _, err := ic.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(name)}); err != nil {
			return err
		}
		kc, err := ic.CreateKeysAndCertificate(ctx, &iot.CreateKeysAndCertificateInput{SetAsActive: true})
		if err != nil {
			return err
		}
		if _, err := ic.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String(name), Principal: kc.CertificateArn}); err != nil {
			return err
		}
		if _, err := ic.AddThingToThingGroup(ctx, &iot.AddThingToThingGroupInput{ThingName: aws.String(name), ThingGroupName: aws.String("fleet")}); err != nil {
			return err
		}
		all[i] = creds{*kc.CertificatePem, *kc.KeyPair.PrivateKey}
		return nil
	})
	caPEM, err := os.ReadFile(ep.CAFile)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)

	// The fleet connects.
	var done atomic.Int64
	finished := make(chan struct{}, n)
	devices := make([]*loadDevice, n)
	connectStart := time.Now()
	parallel(b, n, 32, func(i int) error {
		d, err := connectLoadDevice(ctx, ep.MQTT, pool, all[i].certPEM, all[i].keyPEM, fmt.Sprintf("load-%05d", i), func() {
			done.Add(1)
			finished <- struct{}{}
		})
		devices[i] = d
		return err
	})
	defer func() {
		for _, d := range devices {
			if d != nil {
				d.close()
			}
		}
	}()
	b.Logf("%d devices provisioned and connected (connections took %v)", n, time.Since(connectStart).Round(time.Millisecond))

	b.ResetTimer()
	var total time.Duration
	for it := 0; it < b.N; it++ {
		start := time.Now()
		if _, err := ic.CreateJob(ctx, &iot.CreateJobInput{JobId: aws.String(fmt.Sprintf("load-%d", it)),
			Targets:  []string{"arn:aws:iot:" + ep.Region + ":" + ep.AccountID + ":thinggroup/fleet"},
			Document: aws.String(`{"operation":"app_fw_update","fwversion":"1.0.1"}`)}); err != nil {
			b.Fatal(err)
		}
		for range n {
			select {
			case <-finished:
			case <-ctx.Done():
				b.Fatalf("only %d of %d executions completed", done.Load(), n)
			}
		}
		total += time.Since(start)
		dj, err := ic.DescribeJob(ctx, &iot.DescribeJobInput{JobId: aws.String(fmt.Sprintf("load-%d", it))})
		if err != nil || dj.Job.Status != iottypes.JobStatusCompleted || int(*dj.Job.JobProcessDetails.NumberOfSucceededThings) != n {
			b.Fatalf("job %d: %+v %v", it, dj.Job, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "executions/s")
	b.ReportMetric(float64(n), "devices")
	if hwm, err := srv.peakRSS(); err == nil {
		b.ReportMetric(float64(hwm)/1024, "server-peak-RSS-MB")
	} else {
		b.Logf("server peak RSS unknown: %v", err)
	}
}

// parallel runs f(0..n-1) on workers goroutines; the first error fails b.
func parallel(b *testing.B, n, workers int, f func(i int) error) {
	b.Helper()
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs <- fmt.Errorf("item %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// loadDevice is a minimal Jobs client: it starts whatever notify-next
// names and reports it SUCCEEDED.
type loadDevice struct {
	c      *paho.Client
	thing  string
	onDone func()
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

func connectLoadDevice(ctx context.Context, addr string, pool *x509.CertPool, certPEM, keyPEM, thing string, onDone func()) (*loadDevice, error) {
	cert, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return nil, err
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		return nil, err
	}
	d := &loadDevice{thing: thing, onDone: onDone}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.c = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			d.receive(pr.Packet.Topic, pr.Packet.Payload)
			return true, nil
		}}})
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := d.c.Connect(cctx, &paho.Connect{ClientID: thing, CleanStart: true, KeepAlive: 300}); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := d.c.Subscribe(cctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: iotjobs.NotifyNextTopic(thing).String(), QoS: 1}}}); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// receive reacts to the service's messages; publishing happens off paho's
// receive goroutine.
func (d *loadDevice) receive(topic string, payload []byte) {
	t, err := iotjobs.ParseTopic(topic)
	if err != nil {
		return
	}
	send := func(topic iotjobs.Topic, v any) {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.c.Publish(d.ctx, &paho.Publish{Topic: topic.String(), QoS: 1, Payload: iotjobs.Encode(v)})
		}()
	}
	switch {
	case t.Op == iotjobs.OpNotifyNext:
		var m iotjobs.NotifyNextMessage
		if iotjobs.Decode(payload, &m) == nil && m.Execution != nil && m.Execution.Status == iotjobs.StatusQueued {
			send(iotjobs.StartNextTopic(d.thing), iotjobs.StartNextRequest{ClientToken: "sn"})
		}
	case t.Op == iotjobs.OpStartNext && t.Reply == iotjobs.ReplyAccepted:
		var r iotjobs.ExecutionResponse
		if iotjobs.Decode(payload, &r) == nil && r.Execution != nil {
			send(iotjobs.UpdateTopic(d.thing, r.Execution.JobID), iotjobs.UpdateRequest{Status: iotjobs.StatusSucceeded,
				ExpectedVersion: iotjobs.Ptr(r.Execution.VersionNumber), ClientToken: "up"})
		}
	case t.Op == iotjobs.OpUpdate && t.Reply == iotjobs.ReplyAccepted:
		d.onDone()
	}
}

func (d *loadDevice) close() {
	d.cancel()
	d.wg.Wait()
	d.c.Disconnect(&paho.Disconnect{})
	<-d.c.Done()
}

// The server process: the test binary run again with loadServerEnv set to
// the data directory (see TestMain). It serves until its stdin closes.
const loadServerEnv = "AWSFOTA_LOAD_SERVER_DATA"

func loadServer(dir string) int {
	c, err := Start(Config{DataDir: dir, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "load server:", err)
		return 1
	}
	bufio.NewReader(os.Stdin).ReadByte() // until the benchmark closes stdin
	if err := c.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "load server:", err)
		return 1
	}
	return 0
}

type loadServerProc struct {
	cmd   *exec.Cmd
	stdin interface{ Close() error }
	ep    Endpoints
	done  chan error
}

func startLoadServer(b *testing.B) *loadServerProc {
	b.Helper()
	dir := b.TempDir()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run", "^$")
	cmd.Env = append(os.Environ(), loadServerEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &loadServerProc{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if ep, err := ReadEndpoints(dir); err == nil {
			p.ep = ep
			return p
		}
		select {
		case err := <-p.done:
			b.Fatalf("the load server exited: %v", err)
		case <-deadline.C:
			p.stop(b)
			b.Fatal("the load server wrote no endpoints.json")
		case <-tick.C:
		}
	}
}

// peakRSS is the server's VmHWM in KiB (Linux).
func (p *loadServerProc) peakRSS() (int64, error) {
	f, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(f), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
}

func (p *loadServerProc) stop(b *testing.B) {
	p.stdin.Close()
	select {
	case err := <-p.done:
		if err != nil {
			b.Errorf("the load server: %v", err)
		}
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		b.Error("the load server did not stop when asked")
	}
}
