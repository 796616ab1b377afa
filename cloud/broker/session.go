package broker

import (
	"net"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// sessions is the broker's own record of device connections, from the
// moment a connection presents its CONNECT to the moment its goroutine
// ends; mochi's client list holds a connection only once its session is
// established, and only the last of several with one client id.
//
// It does two things mochi cannot:
//
//   - It serialises the takeover of a client id. mochi looks for the
//     existing session (inheritClientSession) and adds the new client
//     (Clients.Add) in two steps, so CONNECTs with one client id at the same
//     instant could all find none, all be acknowledged, and all but one be
//     left connected outside the client list, beyond the reach of a
//     takeover or a certificate's deactivation. The hook holds the id's lock
//     from OnSessionEstablish (just before those steps) until
//     OnSessionEstablished, or until the connection ends when it fails in
//     between, so each CONNECT sees the one before it and takes it over.
//   - It finds every connection that presented a certificate, established or
//     still connecting, so that deactivating the certificate drops them all.
type sessions struct {
	mu    sync.Mutex
	conns map[net.Conn]*session
	ids   map[string]*idLock
	// The same sessions by client id and by certificate: a takeover, a
	// reply and a deactivation look at the few connections concerned, not
	// at every connection of the fleet.
	byID   map[string]map[net.Conn]*session
	byCert map[string]map[net.Conn]*session
}

type session struct {
	cl          *mqtt.Client
	id          string // the client id it was admitted with
	certID      string
	held        *idLock // the client id's lock, while this connection holds it
	established bool    // in mochi's client list (it may have been taken over since)
}

// idLock is the lock of one client id; refs counts the connections that
// hold it or wait for it, so that it is dropped when none does.
type idLock struct {
	sem  chan struct{} // a token in it: the lock is held
	refs int
}

func newSessions() *sessions {
	return &sessions{conns: map[net.Conn]*session{}, ids: map[string]*idLock{},
		byID: map[string]map[net.Conn]*session{}, byCert: map[string]map[net.Conn]*session{}}
}

func addTo(m map[string]map[net.Conn]*session, k string, c net.Conn, se *session) {
	in := m[k]
	if in == nil {
		in = map[net.Conn]*session{}
		m[k] = in
	}
	in[c] = se
}

func removeFrom(m map[string]map[net.Conn]*session, k string, c net.Conn) {
	if in := m[k]; in != nil {
		delete(in, c)
		if len(in) == 0 {
			delete(m, k)
		}
	}
}

// admit records a connection that presents certificate certID, before it
// is authorised: a deactivation that the authorisation misses finds it.
func (s *sessions) admit(cl *mqtt.Client, certID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := cl.Net.Conn
	if old := s.conns[c]; old != nil {
		removeFrom(s.byID, old.id, c)
		removeFrom(s.byCert, old.certID, c)
	}
	se := &session{cl: cl, id: cl.ID, certID: certID}
	s.conns[c] = se
	addTo(s.byID, se.id, c, se)
	addTo(s.byCert, certID, c, se)
}

// lock takes cl's client id, waiting while another connection with that id
// is establishing its session.
func (s *sessions) lock(cl *mqtt.Client) {
	s.mu.Lock()
	se := s.conns[cl.Net.Conn]
	if se == nil || se.held != nil {
		s.mu.Unlock()
		return
	}
	l := s.acquireLocked(cl.ID)
	s.mu.Lock()
	se.held = l
	s.mu.Unlock()
}

// acquireLocked takes the lock of a client id; it is called with s.mu held
// and returns with it released.
func (s *sessions) acquireLocked(id string) *idLock {
	l := s.ids[id]
	if l == nil {
		l = &idLock{sem: make(chan struct{}, 1)}
		s.ids[id] = l
	}
	l.refs++
	s.mu.Unlock()
	l.sem <- struct{}{}
	return l
}

func (s *sessions) releaseLocked(id string, l *idLock) {
	<-l.sem
	if l.refs--; l.refs == 0 {
		delete(s.ids, id)
	}
}

// established marks conn's session as in mochi's client list and releases
// its client id.
func (s *sessions) established(conn net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if se := s.conns[conn]; se != nil {
		se.established = true
	}
	s.unlockLocked(conn)
}

func (s *sessions) unlockLocked(conn net.Conn) {
	se := s.conns[conn]
	if se == nil || se.held == nil {
		return
	}
	l := se.held
	se.held = nil
	s.releaseLocked(se.cl.ID, l)
}

// end forgets a connection whose goroutine has ended, releasing the lock
// it may still hold (it failed between OnSessionEstablish and
// OnSessionEstablished). It returns the connection's client id, "" for a
// connection never recorded.
func (s *sessions) end(conn net.Conn) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	se := s.conns[conn]
	if se == nil {
		return ""
	}
	s.unlockLocked(conn)
	delete(s.conns, conn)
	removeFrom(s.byID, se.id, conn)
	removeFrom(s.byCert, se.certID, conn)
	return se.cl.ID
}

// current calls f, holding the client id's lock, with the connection of
// that id that is established and open (nil if none).
func (s *sessions) current(id string, f func(*mqtt.Client)) {
	s.mu.Lock()
	l := s.acquireLocked(id)
	s.mu.Lock()
	var live *mqtt.Client
	for _, se := range s.byID[id] {
		if se.cl.ID == id && se.established && !se.cl.Closed() {
			live = se.cl
		}
	}
	s.mu.Unlock()
	f(live)
	s.mu.Lock()
	s.releaseLocked(id, l)
	s.mu.Unlock()
}

// others returns the connections with cl's client id, other than cl, that
// are established and open; called with the id's lock held (by cl).
func (s *sessions) others(cl *mqtt.Client) []*mqtt.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*mqtt.Client
	for _, se := range s.byID[cl.ID] {
		if se.cl != cl && se.cl.ID == cl.ID && se.established && !se.cl.Closed() {
			out = append(out, se.cl)
		}
	}
	return out
}

// ofCertificate returns the connections that presented the certificate and
// have not ended.
func (s *sessions) ofCertificate(certID string) []*mqtt.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*mqtt.Client
	for _, se := range s.byCert[certID] {
		if se.certID == certID {
			out = append(out, se.cl)
		}
	}
	return out
}

// count returns how many connections with the client id have not ended.
func (s *sessions) count(clientID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, se := range s.byID[clientID] {
		if se.cl.ID == clientID && !se.cl.Closed() {
			n++
		}
	}
	return n
}
