package broker

// Connected reports whether a client (a device: its client id is its thing
// name) has a live connection to the broker now.
func (b *Broker) Connected(clientID string) bool {
	cl, ok := b.srv.Clients.Get(clientID)
	return ok && !cl.Net.Inline && !cl.Closed()
}
