// Package emu wires the whole local cloud in one process: the CA, the
// registry of things, thing groups and certificates, the Jobs service and
// its timers, the MQTT broker on mutual TLS (or the Jobs service attached to
// an external broker such as Mosquitto), and one HTTP port serving both the
// S3-compatible object store and the AWS IoT control plane (routed by the
// SigV4 credential scope's service, as LocalStack does), all kept under one
// data directory so that they survive a restart. `awsfota cloud serve`, the
// demo and the tests start it; the endpoints it listens on are written to
// <data>/endpoints.json for other tools.
//
// It imports the standard library, bbolt, atomicfile and the other
// cloud/* packages; cloud/* must never import device/* or sim/.
package emu

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/awsfota/awsfota/atomicfile"
	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/cloud/broker"
	"github.com/awsfota/awsfota/cloud/iotapi"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/cloud/objstore"
	"github.com/awsfota/awsfota/cloud/pki"
	"github.com/awsfota/awsfota/cloud/registry"
	"github.com/awsfota/awsfota/cloud/sigv4"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Defaults.
const (
	DefaultMQTTAddr  = "127.0.0.1:8883"
	DefaultHTTPAddr  = "127.0.0.1:4566"
	DefaultRegion    = "us-east-1"
	DefaultAccountID = "000000000000"
	EndpointsFile    = "endpoints.json"
)

// Config configures the local cloud.
type Config struct {
	// DataDir keeps all state (created if missing).
	DataDir string
	// MQTTAddr and HTTPAddr to listen on; port 0 picks a free port.
	MQTTAddr, HTTPAddr string
	// ServerNames are extra names (or IPs) the broker's certificate is valid
	// for, besides localhost and 127.0.0.1.
	ServerNames []string
	Region      string
	AccountID   string
	Clock       clock.Clock
	Logger      *slog.Logger
	// NoSync skips fsync in the database: faster, for tests and demos whose
	// data is thrown away.
	NoSync bool
	// Policy is the AWS IoT policy the embedded broker applies to every
	// device; nil means broker.DefaultPolicy (each thing confined to its
	// own $aws/things/<thing>/ topics).
	Policy *broker.Policy
	// ExternalMQTT, when set (host:port), runs no embedded broker: the Jobs
	// service attaches to that broker (MQTT over TLS, e.g. Mosquitto) as a
	// privileged client with a certificate from the local CA (subject
	// "CN=awsfota-jobs,O=awsfota cloud"). See WriteMosquittoConfig.
	ExternalMQTT string
	// AttachTimeout bounds the wait for the external broker (default 30s).
	AttachTimeout time.Duration
	// HTTPS serves the HTTP port (S3 and IoT APIs) over TLS with a server
	// certificate from the local CA (valid for localhost, 127.0.0.1, ::1
	// and ServerNames), as AWS serves only HTTPS; presigned URLs then start
	// with https://, and clients must trust the CA (endpoints.json caFile).
	HTTPS bool
	// JobDeletionDelay is how long DeleteJob takes (jobsvc.Config's
	// DeletionDelay; default jobsvc.DefaultDeletionDelay).
	JobDeletionDelay time.Duration
	// DeviceRequestRate and DeviceRequestBurst throttle each thing's Jobs
	// requests (jobsvc.Config's); 0 is no limit.
	DeviceRequestRate  float64
	DeviceRequestBurst int
	// DeferEndpoints keeps Start from writing <DataDir>/endpoints.json,
	// the file that tells other processes the cloud is ready: the caller
	// mounts what it serves besides (Mount), then calls WriteEndpoints, so
	// that nothing reads the file before everything it points at answers.
	DeferEndpoints bool
}

// Endpoints tell clients where the cloud is and how to sign in;
// <data>/endpoints.json holds the same.
type Endpoints struct {
	MQTT            string `json:"mqtt"` // host:port of the broker (mutual TLS)
	HTTP            string `json:"http"` // base URL of the S3 and IoT APIs
	Region          string `json:"region"`
	AccountID       string `json:"accountId"`
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
	CAFile          string `json:"caFile"` // PEM of the CA that signs the broker and the devices
	// PID is the cloud's process id, for tools that measure it (the
	// simulated fleet reads its peak memory); 0 from an older cloud.
	PID int `json:"pid,omitempty"`
}

// ListenError is Start's error when the cloud cannot listen on one of its
// addresses, most often because another process (another local cloud)
// already does: errors.Is(err, syscall.EADDRINUSE) tells that case.
type ListenError struct {
	API  string // "MQTT" (Config.MQTTAddr) or "HTTP" (Config.HTTPAddr)
	Addr string
	Err  error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("emu: %s: listening on %s: %v", e.API, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// Cloud is a running local cloud.
type Cloud struct {
	cfg      Config
	db       *bolt.DB
	CA       *pki.CA
	Registry *registry.Registry
	Jobs     *jobsvc.Service
	Objects  *objstore.Store
	IoT      *iotapi.API
	broker   *broker.Broker    // the embedded broker, or nil
	external *broker.External  // the attachment to an external broker, or nil
	mosqMu   sync.Mutex        // serialises rewrites of Mosquitto's revocation and access lists
	aclKick  chan struct{}     // a token: Mosquitto's access list is out of date (ExternalMQTT)
	aclUsers map[string]string // certificate id → its Mosquitto user name (under mosqMu)
	httpSrv  *http.Server
	httpLn   net.Listener
	httpAddr string // host:port the HTTP port listens on
	httpDone chan struct{}
	creds    sigv4.Credentials
	mountMu  sync.RWMutex
	mounted  mounts // see Mount
	own      ownAPI // see changes.go

	stopTimers context.CancelFunc
	timers     sync.WaitGroup
}

// Start opens the data directory and starts serving.
func Start(cfg Config) (_ *Cloud, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("emu: a data directory is required")
	}
	if cfg.MQTTAddr == "" {
		cfg.MQTTAddr = DefaultMQTTAddr
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = DefaultHTTPAddr
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.AccountID == "" {
		cfg.AccountID = DefaultAccountID
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// Absolute, so that endpoints.json (caFile) means the same from any
	// directory a tool runs in.
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("emu: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("emu: %w", err)
	}
	c := &Cloud{cfg: cfg}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.creds, err = loadCredentials(filepath.Join(cfg.DataDir, "credentials.json")); err != nil {
		return nil, err
	}
	c.db, err = bolt.Open(filepath.Join(cfg.DataDir, "cloud.db"), 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: cfg.NoSync})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("emu: %s is in use by another local cloud; stop it or use another --data directory", cfg.DataDir)
		}
		return nil, fmt.Errorf("emu: opening the database: %w", err)
	}
	// The directory is ours now. An endpoints file left by an earlier run
	// names ports nobody listens on: gone until this run's is written.
	if err := os.Remove(filepath.Join(cfg.DataDir, EndpointsFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("emu: %w", err)
	}
	if c.CA, err = pki.LoadOrCreate(filepath.Join(cfg.DataDir, "pki"), cfg.Clock.Now); err != nil {
		return nil, err
	}
	if c.Registry, err = registry.Open(c.db, registry.Config{Region: cfg.Region, AccountID: cfg.AccountID, Clock: cfg.Clock}); err != nil {
		return nil, err
	}
	if c.Objects, err = objstore.Open(objstore.Config{Dir: filepath.Join(cfg.DataDir, "objects"), Region: cfg.Region,
		Credentials: []sigv4.Credentials{c.creds}, Clock: cfg.Clock, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	// The HTTP listener comes first: presigned URLs in job documents point
	// at it.
	if c.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, &ListenError{API: "HTTP", Addr: cfg.HTTPAddr, Err: err}
	}
	c.httpAddr = c.httpLn.Addr().String()
	if cfg.HTTPS {
		cert, err := c.CA.ServerCertificate(cfg.ServerNames...)
		if err != nil {
			return nil, err
		}
		c.httpLn = tls.NewListener(c.httpLn, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
			NextProtos: []string{"http/1.1"}})
	}
	if c.Jobs, err = jobsvc.Open(c.db, jobsvc.Config{Region: cfg.Region, AccountID: cfg.AccountID, Clock: cfg.Clock,
		Groups: c.Registry, Presign: c.presign, DeletionDelay: cfg.JobDeletionDelay, DeviceRequestRate: cfg.DeviceRequestRate,
		DeviceRequestBurst: cfg.DeviceRequestBurst, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	var disconnect, certChanged func(string)
	var principalsChanged func()
	if cfg.ExternalMQTT != "" {
		// Mosquitto learns which certificate may use which thing's topics
		// from its access list, and of certificates that are no longer
		// ACTIVE from its revocation list: bring both up to date with the
		// registry before the Jobs service connects.
		if err := c.updateMosquittoACL(); err != nil {
			return nil, err
		}
		if err := c.updateMosquittoCRL(); err != nil {
			return nil, err
		}
		if err := c.attach(); err != nil {
			return nil, err
		}
		c.Jobs.SetPublisher(c.external)
		c.aclKick = make(chan struct{}, 1)
		certChanged = func(id string) {
			if err := c.updateMosquittoCRL(); err != nil {
				cfg.Logger.Error("the external broker's revocation list could not be updated", "certificate", id, "err", err)
			}
			c.kickACL()
		}
		principalsChanged = c.kickACL
	} else {
		srvCert, err := c.CA.ServerCertificate(cfg.ServerNames...)
		if err != nil {
			return nil, err
		}
		if c.broker, err = broker.Start(broker.Config{Addr: cfg.MQTTAddr, Certificate: srvCert, ClientCAs: c.CA.Pool(),
			Authorizer: c.Registry, Jobs: c.Jobs, Policy: cfg.Policy, Region: cfg.Region, AccountID: cfg.AccountID, Logger: cfg.Logger}); err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, &ListenError{API: "MQTT", Addr: cfg.MQTTAddr, Err: err}
			}
			return nil, fmt.Errorf("emu: MQTT: %w", err)
		}
		c.Jobs.SetPublisher(c.broker)
		disconnect = func(id string) { c.broker.DisconnectCertificate(id) }
	}
	if c.IoT, err = iotapi.New(iotapi.Config{Region: cfg.Region, AccountID: cfg.AccountID, Credentials: []sigv4.Credentials{c.creds},
		Clock: cfg.Clock, Registry: c.Registry, Jobs: c.Jobs, CA: c.CA, Disconnect: disconnect, CertificateChanged: certChanged, PrincipalsChanged: principalsChanged, OpenObject: c.openObject,
		Endpoint: c.endpointHost, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	c.httpSrv = &http.Server{Handler: c.router(), ReadHeaderTimeout: 30 * time.Second}
	c.httpDone = make(chan struct{})
	go func() {
		defer close(c.httpDone)
		c.httpSrv.Serve(c.httpLn)
	}()
	var tctx context.Context
	tctx, c.stopTimers = context.WithCancel(context.Background())
	c.timers.Add(1)
	go func() {
		defer c.timers.Done()
		c.Jobs.RunTimers(tctx)
	}()
	if c.aclKick != nil {
		c.timers.Add(1)
		go func() {
			defer c.timers.Done()
			c.runACL(tctx)
		}()
	}
	if !cfg.DeferEndpoints {
		if err := c.WriteEndpoints(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// aclDelay gathers the changes of attachments that come together (a fleet
// provisioned at once) into one rewrite of Mosquitto's access list.
const aclDelay = 200 * time.Millisecond

// kickACL marks Mosquitto's access list out of date.
func (c *Cloud) kickACL() {
	select {
	case c.aclKick <- struct{}{}:
	default:
	}
}

// runACL rewrites Mosquitto's access list aclDelay after it went out of
// date, until ctx ends.
func (c *Cloud) runACL(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.aclKick:
		}
		t := time.NewTimer(aclDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := c.updateMosquittoACL(); err != nil {
			c.cfg.Logger.Error("the external broker's access list could not be updated", "err", err)
		}
	}
}

// attach connects the Jobs service to the external broker.
func (c *Cloud) attach() error {
	iss, err := c.CA.IssueClientSubject(jobsSubject)
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(iss.CertPEM, iss.KeyPEM)
	if err != nil {
		return fmt.Errorf("emu: %w", err)
	}
	timeout := c.cfg.AttachTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c.external, err = broker.Attach(ctx, broker.ExternalConfig{Addr: c.cfg.ExternalMQTT,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: c.CA.Pool(), MinVersion: tls.VersionTLS12}, Jobs: c.Jobs, Logger: c.cfg.Logger})
	if err != nil {
		return fmt.Errorf("emu: %w", err)
	}
	return nil
}

// presign makes the presigned URLs of job documents: GETs of the local
// object store, signed with the local credentials.
func (c *Cloud) presign(bucket, key string, expires time.Duration) (string, error) {
	return c.Objects.Presign(c.httpURL(), bucket, key, expires)
}

// httpURL is the base URL of the HTTP port.
func (c *Cloud) httpURL() string {
	if c.cfg.HTTPS {
		return "https://" + c.httpAddr
	}
	return "http://" + c.httpAddr
}

// endpointHost is what DescribeEndpoint answers: as on AWS a host name
// without the port (the ports are in endpoints.json) — of the broker for
// iot:Data and iot:Data-ATS, of the HTTP port for iot:Jobs. An unspecified
// listen address (0.0.0.0, ::) is named by the first --server-name, else
// localhost.
func (c *Cloud) endpointHost(endpointType string) string {
	addr := c.Endpoints().MQTT
	if endpointType == "iot:Jobs" {
		addr = c.httpAddr
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
		if len(c.cfg.ServerNames) > 0 {
			host = c.cfg.ServerNames[0]
		}
	}
	return host
}

func (c *Cloud) openObject(bucket, key string) (io.ReadCloser, error) {
	o, _, err := c.Objects.Open(bucket, key)
	if err != nil {
		return nil, err
	}
	return o, nil
}

// router sends each request to the API its SigV4 scope names, as LocalStack
// does: "s3" (or none: anonymous and presigned GETs) to the object store,
// "iot" (the SDKs) and "execute-api" (the AWS CLI) to the IoT control plane.
func (c *Cloud) router() http.Handler {
	s3 := c.Objects.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.serveOwn(w, r) {
			return
		}
		svc, _ := sigv4.ScopeService(r)
		if h := c.mountFor(r); h != nil && svc == "" {
			h.ServeHTTP(w, r)
			return
		}
		switch svc {
		case "", "s3":
			s3.ServeHTTP(w, r)
		case iotapi.ServiceIoT, iotapi.ServiceExecuteAPI:
			c.IoT.ServeHTTP(w, r)
		case iotapi.ServiceJobsData:
			c.IoT.JobsData().ServeHTTP(w, r)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Amzn-ErrorType", "NotImplementedException")
			w.WriteHeader(http.StatusNotImplemented)
			fmt.Fprintf(w, `{"__type":"NotImplementedException","message":"the awsfota local cloud serves S3, AWS IoT and the iot-jobs-data API, not %q: sign the request for s3, iot or iot-jobs-data"}`, svc)
		}
	})
}

// Endpoints returns where the cloud listens.
func (c *Cloud) Endpoints() Endpoints {
	mqttAddr := c.cfg.ExternalMQTT
	if c.broker != nil {
		mqttAddr = c.broker.Addr()
	}
	return Endpoints{
		MQTT:            mqttAddr,
		HTTP:            c.httpURL(),
		Region:          c.cfg.Region,
		AccountID:       c.cfg.AccountID,
		AccessKeyID:     c.creds.AccessKeyID,
		SecretAccessKey: c.creds.SecretAccessKey,
		CAFile:          c.CA.CertFile(),
		PID:             os.Getpid(),
	}
}

// WriteEndpoints writes <DataDir>/endpoints.json (atomically): the
// signal other processes wait for. Start does it unless
// Config.DeferEndpoints.
func (c *Cloud) WriteEndpoints() error {
	b, _ := json.MarshalIndent(c.Endpoints(), "", "  ")
	return writeFile(filepath.Join(c.cfg.DataDir, EndpointsFile), append(b, '\n'))
}

// ReadEndpoints reads <dir>/endpoints.json.
func ReadEndpoints(dir string) (Endpoints, error) {
	var e Endpoints
	b, err := os.ReadFile(filepath.Join(dir, EndpointsFile))
	if err != nil {
		return e, fmt.Errorf("emu: %w (is `awsfota cloud serve --data %s` running?)", err, dir)
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("emu: %s: %w", filepath.Join(dir, EndpointsFile), err)
	}
	if e.CAFile != "" && !filepath.IsAbs(e.CAFile) {
		// Written by an older cloud, relative to where it was started: the
		// CA is in the data directory all the same.
		e.CAFile = filepath.Join(dir, "pki", "ca.pem")
	}
	return e, nil
}

// ThingCredentials are what a device needs to connect as a thing.
type ThingCredentials struct {
	Thing         string
	CertificateID string
	CertPEM       []byte
	KeyPEM        []byte
	CAPEM         []byte
}

// ProvisionThing registers a thing with a new ACTIVE certificate attached, as
// CreateThing + CreateKeysAndCertificate + AttachThingPrincipal do.
func (c *Cloud) ProvisionThing(name string) (*ThingCredentials, error) {
	if _, err := c.Registry.CreateThing(name, nil); err != nil {
		return nil, err
	}
	iss, err := c.CA.IssueClient(name)
	if err != nil {
		return nil, err
	}
	if _, err := c.Registry.AddCertificate(iss.ID, string(iss.CertPEM), registry.StatusActive); err != nil {
		return nil, err
	}
	if err := c.Registry.AttachThingPrincipal(name, iss.ID); err != nil {
		return nil, err
	}
	if c.aclKick != nil {
		// On Mosquitto the new device may use its topics once this returns.
		if err := c.updateMosquittoACL(); err != nil {
			return nil, err
		}
	}
	// A dynamic group's query may match it: continuous jobs reach it.
	if err := c.Jobs.ReconcileThing(name); err != nil {
		return nil, err
	}
	return &ThingCredentials{Thing: name, CertificateID: iss.ID, CertPEM: iss.CertPEM, KeyPEM: iss.KeyPEM, CAPEM: c.CA.CertPEM()}, nil
}

// Close stops serving and closes the data directory.
func (c *Cloud) Close() error {
	var errs []error
	if c.httpSrv != nil {
		// Let requests in flight finish (briefly), then drop what is left.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := c.httpSrv.Shutdown(ctx); err != nil {
			c.httpSrv.Close()
		}
		cancel()
		<-c.httpDone
	} else if c.httpLn != nil {
		c.httpLn.Close()
	}
	if c.stopTimers != nil {
		c.stopTimers()
		c.timers.Wait()
	}
	if c.broker != nil {
		errs = append(errs, c.broker.Close())
	}
	if c.external != nil {
		errs = append(errs, c.external.Close())
	}
	if c.Objects != nil {
		errs = append(errs, c.Objects.Close())
	}
	if c.db != nil {
		errs = append(errs, c.db.Close())
	}
	return errors.Join(errs...)
}

func loadCredentials(path string) (sigv4.Credentials, error) {
	var cr sigv4.Credentials
	b, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(b, &cr); err != nil || cr.AccessKeyID == "" {
			return cr, fmt.Errorf("emu: %s is damaged; delete it to get new credentials", path)
		}
		return cr, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return cr, fmt.Errorf("emu: %w", err)
	}
	cr = sigv4.Credentials{AccessKeyID: "AKIA" + randomString(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
		SecretAccessKey: randomString(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
	b, _ = json.Marshal(cr)
	return cr, writeFile(path, b)
}

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// writeFile writes durably, readable by its owner only (credentials).
func writeFile(path string, data []byte) error {
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("emu: %w", err)
	}
	return nil
}
