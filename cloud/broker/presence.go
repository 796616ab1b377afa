package broker

// Connected reports whether a client (a device: its client id is its thing
// name) has a live connection to the broker now.
func (b *Broker) Connected(clientID string) bool {
	cl, ok := b.srv.Clients.Get(clientID)
	return ok && !cl.Net.Inline && !cl.Closed()
}

// ConnectedClients returns the ids of the clients (devices) connected now.
func (b *Broker) ConnectedClients() []string {
	var out []string
	for id, cl := range b.srv.Clients.GetAll() {
		if !cl.Net.Inline && !cl.Closed() {
			out = append(out, id)
		}
	}
	return out
}
