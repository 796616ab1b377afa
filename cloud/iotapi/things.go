package iotapi

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/http"
	"sort"
	"strings"

	"github.com/awsfota/awsfota/cloud/pki"
	"github.com/awsfota/awsfota/cloud/registry"
)

// The registry operations: things, static thing groups, certificates and
// their attachment, DescribeEndpoint.

type attributePayload struct {
	Attributes map[string]string `json:"attributes,omitempty"`
	Merge      bool              `json:"merge,omitempty"`
}

func (a *API) createThing(r *http.Request) (any, error) {
	name := r.PathValue("thingName")
	var in struct {
		AttributePayload *attributePayload `json:"attributePayload"`
		ThingTypeName    string            `json:"thingTypeName"`
		BillingGroupName string            `json:"billingGroupName"`
	}
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.ThingTypeName != "" {
		return nil, notFound("thing type %s does not exist: the local cloud has no thing types; create the thing without one", in.ThingTypeName)
	}
	if in.BillingGroupName != "" {
		return nil, notFound("billing group %s does not exist: the local cloud has no billing groups", in.BillingGroupName)
	}
	var attrs map[string]string
	if in.AttributePayload != nil && len(in.AttributePayload.Attributes) > 0 {
		attrs = in.AttributePayload.Attributes
	}
	th, err := a.cfg.Registry.CreateThing(name, attrs)
	if errors.Is(err, registry.ErrExists) {
		ae := apiErr(http.StatusConflict, "ResourceAlreadyExistsException", "thing %s already exists with different attributes", name)
		ae.ResourceID, ae.ResourceARN = name, a.cfg.Registry.ThingARN(name)
		return nil, ae
	}
	if err != nil {
		return nil, err
	}
	// A dynamic group's query may match it: continuous jobs reach it.
	if err := a.cfg.Jobs.ReconcileThing(name); err != nil {
		return nil, err
	}
	return map[string]string{"thingName": th.Name, "thingArn": th.ARN, "thingId": th.ID}, nil
}

func (a *API) updateThing(r *http.Request) (any, error) {
	name := r.PathValue("thingName")
	var in struct {
		AttributePayload *attributePayload `json:"attributePayload"`
		ExpectedVersion  int64             `json:"expectedVersion"`
		ThingTypeName    string            `json:"thingTypeName"`
		RemoveThingType  bool              `json:"removeThingType"`
	}
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.ThingTypeName != "" {
		return nil, notFound("thing type %s does not exist: the local cloud has no thing types", in.ThingTypeName)
	}
	var attrs map[string]string
	merge := false
	if in.AttributePayload != nil {
		attrs, merge = in.AttributePayload.Attributes, in.AttributePayload.Merge
	} else {
		// Without an attribute payload the attributes stay as they are.
		merge = true
	}
	if _, err := a.cfg.Registry.UpdateThing(name, attrs, merge, in.ExpectedVersion); err != nil {
		return nil, err
	}
	// Its dynamic groups may have changed.
	return nil, a.cfg.Jobs.ReconcileThing(name)
}

func (a *API) describeThing(r *http.Request) (any, error) {
	th, err := a.cfg.Registry.DescribeThing(r.PathValue("thingName"))
	if err != nil {
		return nil, err
	}
	return struct {
		DefaultClientID string            `json:"defaultClientId"`
		ThingName       string            `json:"thingName"`
		ThingID         string            `json:"thingId"`
		ThingArn        string            `json:"thingArn"`
		Attributes      map[string]string `json:"attributes"`
		Version         int64             `json:"version"`
	}{th.Name, th.Name, th.ID, th.ARN, nonNil(th.Attributes), th.Version}, nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

type thingAttribute struct {
	ThingName  string            `json:"thingName"`
	ThingArn   string            `json:"thingArn"`
	Attributes map[string]string `json:"attributes"`
	Version    int64             `json:"version"`
}

func (a *API) listThings(r *http.Request) (any, error) {
	q := r.URL.Query()
	things, err := a.cfg.Registry.ListThings()
	if err != nil {
		return nil, err
	}
	name, value := q.Get("attributeName"), q.Get("attributeValue")
	prefix, err := queryBool(r, "usePrefixAttributeValue")
	if err != nil {
		return nil, err
	}
	var out []thingAttribute
	for _, th := range things {
		if q.Get("thingTypeName") != "" {
			continue // no thing has a type here
		}
		if name != "" {
			v, ok := th.Attributes[name]
			if !ok || value != "" && (prefix && !strings.HasPrefix(v, value) || !prefix && v != value) {
				continue
			}
		}
		out = append(out, thingAttribute{th.Name, th.ARN, nonNil(th.Attributes), th.Version})
	}
	start, end, next, err := page(r, len(out), "maxResults", "nextToken")
	if err != nil {
		return nil, err
	}
	return struct {
		Things    []thingAttribute `json:"things"`
		NextToken string           `json:"nextToken,omitempty"`
	}{append([]thingAttribute{}, out[start:end]...), next}, nil
}

func (a *API) deleteThing(r *http.Request) (any, error) {
	name := r.PathValue("thingName")
	th, err := a.cfg.Registry.DescribeThing(name)
	if err != nil {
		return nil, err
	}
	if v, ok, err := queryInt(r, "expectedVersion"); err != nil {
		return nil, err
	} else if ok && v != th.Version {
		return nil, apiErr(http.StatusConflict, "VersionConflictException", "thing %s is at version %d, not %d", name, th.Version, v)
	}
	if err := a.cfg.Registry.DeleteThing(name); err != nil {
		return nil, err
	}
	a.principalsChanged()
	// Its groups are gone: continuous jobs mark its pending executions REMOVED.
	return nil, a.cfg.Jobs.ReconcileThing(name)
}

type groupProperties struct {
	Description      string            `json:"thingGroupDescription,omitempty"`
	AttributePayload *attributePayload `json:"attributePayload,omitempty"`
}

func (a *API) createThingGroup(r *http.Request) (any, error) {
	name := r.PathValue("thingGroupName")
	var in struct {
		ParentGroupName string           `json:"parentGroupName"`
		Properties      *groupProperties `json:"thingGroupProperties"`
	}
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	var desc string
	var attrs map[string]string
	if p := in.Properties; p != nil {
		desc = p.Description
		if p.AttributePayload != nil && len(p.AttributePayload.Attributes) > 0 {
			attrs = p.AttributePayload.Attributes
		}
	}
	g, err := a.cfg.Registry.CreateThingGroup(name, in.ParentGroupName, desc, attrs)
	if errors.Is(err, registry.ErrExists) {
		ae := apiErr(http.StatusConflict, "ResourceAlreadyExistsException", "thing group %s already exists with different properties", name)
		ae.ResourceID, ae.ResourceARN = name, a.cfg.Registry.GroupARN(name)
		return nil, ae
	}
	if err != nil {
		return nil, err
	}
	return map[string]string{"thingGroupName": g.Name, "thingGroupArn": g.ARN, "thingGroupId": g.ID}, nil
}

type groupNameAndArn struct {
	GroupName string `json:"groupName"`
	GroupArn  string `json:"groupArn"`
}

func (a *API) describeThingGroup(r *http.Request) (any, error) {
	g, err := a.cfg.Registry.DescribeThingGroup(r.PathValue("thingGroupName"))
	if err != nil {
		return nil, err
	}
	var chain []groupNameAndArn
	for p := g.Parent; p != ""; {
		pg, err := a.cfg.Registry.DescribeThingGroup(p)
		if err != nil {
			break
		}
		chain = append([]groupNameAndArn{{pg.Name, pg.ARN}}, chain...)
		p = pg.Parent
	}
	type metadata struct {
		ParentGroupName         string            `json:"parentGroupName,omitempty"`
		RootToParentThingGroups []groupNameAndArn `json:"rootToParentThingGroups,omitempty"`
		CreationDate            epoch             `json:"creationDate,omitzero"`
	}
	out := struct {
		Name         string          `json:"thingGroupName"`
		ID           string          `json:"thingGroupId"`
		ARN          string          `json:"thingGroupArn"`
		Version      int64           `json:"version"`
		Properties   groupProperties `json:"thingGroupProperties"`
		Metadata     metadata        `json:"thingGroupMetadata"`
		IndexName    string          `json:"indexName,omitempty"`
		QueryString  string          `json:"queryString,omitempty"`
		QueryVersion string          `json:"queryVersion,omitempty"`
		Status       string          `json:"status,omitempty"`
	}{Name: g.Name, ID: g.ID, ARN: g.ARN, Version: g.Version,
		Properties: groupProperties{g.Description, &attributePayload{Attributes: nonNil(g.Attributes)}},
		Metadata:   metadata{g.Parent, chain, epoch(g.CreatedAt)}}
	if g.Dynamic {
		// The local cloud evaluates queries on demand: the group is never
		// BUILDING.
		out.IndexName, out.QueryString, out.QueryVersion, out.Status = g.IndexName, g.QueryString, g.QueryVersion, "ACTIVE"
	}
	return out, nil
}

// dynamicGroupInput is CreateDynamicThingGroup's and
// UpdateDynamicThingGroup's body.
type dynamicGroupInput struct {
	Properties      *groupProperties `json:"thingGroupProperties"`
	IndexName       string           `json:"indexName"`
	QueryString     string           `json:"queryString"`
	QueryVersion    string           `json:"queryVersion"`
	ExpectedVersion int64            `json:"expectedVersion"`
}

func (in *dynamicGroupInput) spec(name string) registry.DynamicGroupSpec {
	spec := registry.DynamicGroupSpec{Name: name, IndexName: in.IndexName, QueryString: in.QueryString, QueryVersion: in.QueryVersion}
	if p := in.Properties; p != nil {
		spec.Description = p.Description
		if p.AttributePayload != nil && len(p.AttributePayload.Attributes) > 0 {
			spec.Attributes = p.AttributePayload.Attributes
		}
	}
	return spec
}

func (a *API) createDynamicThingGroup(r *http.Request) (any, error) {
	name := r.PathValue("thingGroupName")
	var in dynamicGroupInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.QueryString == "" {
		return nil, invalid("queryString is required: a fleet-indexing query, e.g. attributes.model:nrf9160")
	}
	g, err := a.cfg.Registry.CreateDynamicThingGroup(in.spec(name))
	if errors.Is(err, registry.ErrExists) {
		ae := apiErr(http.StatusConflict, "ResourceAlreadyExistsException", "thing group %s already exists", name)
		ae.ResourceID, ae.ResourceARN = name, a.cfg.Registry.GroupARN(name)
		return nil, ae
	}
	if err != nil {
		return nil, err
	}
	if err := a.reconcileAll(); err != nil {
		return nil, err
	}
	return map[string]string{"thingGroupName": g.Name, "thingGroupArn": g.ARN, "thingGroupId": g.ID,
		"indexName": g.IndexName, "queryString": g.QueryString, "queryVersion": g.QueryVersion}, nil
}

func (a *API) updateDynamicThingGroup(r *http.Request) (any, error) {
	var in dynamicGroupInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	g, err := a.cfg.Registry.UpdateDynamicThingGroup(in.spec(r.PathValue("thingGroupName")), in.ExpectedVersion)
	if err != nil {
		return nil, err
	}
	if err := a.reconcileAll(); err != nil {
		return nil, err
	}
	return map[string]int64{"version": g.Version}, nil
}

func (a *API) deleteDynamicThingGroup(r *http.Request) (any, error) {
	name := r.PathValue("thingGroupName")
	v, _, err := queryInt(r, "expectedVersion")
	if err != nil {
		return nil, err
	}
	members, err := a.cfg.Registry.ListThingsInThingGroup(name, false)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, nil // as on AWS
	}
	if err != nil {
		return nil, err
	}
	if err := a.cfg.Registry.DeleteDynamicThingGroup(name, v); err != nil {
		return nil, err
	}
	for _, th := range members {
		if err := a.cfg.Jobs.ReconcileThing(th); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// reconcileAll brings every thing's executions of continuous jobs in line
// with its groups, after a dynamic group's query changed.
func (a *API) reconcileAll() error {
	things, err := a.cfg.Registry.ListThings()
	if err != nil {
		return err
	}
	for _, th := range things {
		if err := a.cfg.Jobs.ReconcileThing(th.Name); err != nil {
			return err
		}
	}
	return nil
}

func (a *API) groupList(r *http.Request, groups []registry.ThingGroup) (any, error) {
	start, end, next, err := page(r, len(groups), "maxResults", "nextToken")
	if err != nil {
		return nil, err
	}
	out := []groupNameAndArn{}
	for _, g := range groups[start:end] {
		out = append(out, groupNameAndArn{g.Name, g.ARN})
	}
	return struct {
		ThingGroups []groupNameAndArn `json:"thingGroups"`
		NextToken   string            `json:"nextToken,omitempty"`
	}{out, next}, nil
}

func (a *API) listThingGroups(r *http.Request) (any, error) {
	q := r.URL.Query()
	all, err := a.cfg.Registry.ListThingGroups()
	if err != nil {
		return nil, err
	}
	parent := q.Get("parentGroup")
	recursive := true
	if q.Get("recursive") != "" {
		if recursive, err = queryBool(r, "recursive"); err != nil {
			return nil, err
		}
	}
	if parent != "" {
		if _, err := a.cfg.Registry.DescribeThingGroup(parent); err != nil {
			return nil, err
		}
		if q.Get("recursive") == "" {
			recursive = false
		}
	}
	byName := map[string]registry.ThingGroup{}
	for _, g := range all {
		byName[g.Name] = g
	}
	under := func(g registry.ThingGroup) bool { // a descendant of parent?
		for p, n := g.Parent, 0; p != "" && n < registry.MaxGroupDepth; p, n = byName[p].Parent, n+1 {
			if p == parent {
				return true
			}
		}
		return false
	}
	var out []registry.ThingGroup
	for _, g := range all {
		switch {
		case !strings.HasPrefix(g.Name, q.Get("namePrefixFilter")):
		case parent == "" && !recursive && g.Parent != "":
		case parent != "" && !recursive && g.Parent != parent:
		case parent != "" && recursive && !under(g):
		default:
			out = append(out, g)
		}
	}
	return a.groupList(r, out)
}

func (a *API) deleteThingGroup(r *http.Request) (any, error) {
	name := r.PathValue("thingGroupName")
	g, err := a.cfg.Registry.DescribeThingGroup(name)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, nil // deleting a group that does not exist succeeds, as on AWS
	}
	if err != nil {
		return nil, err
	}
	if v, ok, err := queryInt(r, "expectedVersion"); err != nil {
		return nil, err
	} else if ok && v != g.Version {
		return nil, apiErr(http.StatusConflict, "VersionConflictException", "thing group %s is at version %d, not %d", name, g.Version, v)
	}
	members, err := a.cfg.Registry.ListThingsInThingGroup(name, false)
	if err != nil {
		return nil, err
	}
	if err := a.cfg.Registry.DeleteThingGroup(name); errors.Is(err, registry.ErrConflict) {
		return nil, invalid("%s", trimPrefix(err))
	} else if err != nil {
		return nil, err
	}
	for _, th := range members {
		if err := a.cfg.Jobs.ReconcileThing(th); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// membership reads AddThingToThingGroup's and RemoveThingFromThingGroup's
// input: names, or ARNs.
func (a *API) membership(r *http.Request) (thing, group string, err error) {
	var in struct {
		ThingGroupName string `json:"thingGroupName"`
		ThingGroupArn  string `json:"thingGroupArn"`
		ThingName      string `json:"thingName"`
		ThingArn       string `json:"thingArn"`
	}
	if err := decode(r, &in); err != nil {
		return "", "", err
	}
	thing, group = in.ThingName, in.ThingGroupName
	if thing == "" && in.ThingArn != "" {
		if thing, err = a.arnName(in.ThingArn, "thing"); err != nil {
			return "", "", err
		}
	}
	if group == "" && in.ThingGroupArn != "" {
		if group, err = a.arnName(in.ThingGroupArn, "thinggroup"); err != nil {
			return "", "", err
		}
	}
	if thing == "" || group == "" {
		return "", "", invalid("name the thing (thingName or thingArn) and the thing group (thingGroupName or thingGroupArn)")
	}
	return thing, group, nil
}

func (a *API) addThingToThingGroup(r *http.Request) (any, error) {
	thing, group, err := a.membership(r)
	if err != nil {
		return nil, err
	}
	if err := a.cfg.Registry.AddThingToThingGroup(thing, group); err != nil {
		return nil, err
	}
	return nil, a.cfg.Jobs.ReconcileThing(thing)
}

func (a *API) removeThingFromThingGroup(r *http.Request) (any, error) {
	thing, group, err := a.membership(r)
	if err != nil {
		return nil, err
	}
	if err := a.cfg.Registry.RemoveThingFromThingGroup(thing, group); err != nil {
		return nil, err
	}
	return nil, a.cfg.Jobs.ReconcileThing(thing)
}

func (a *API) listThingsInThingGroup(r *http.Request) (any, error) {
	recursive, err := queryBool(r, "recursive")
	if err != nil {
		return nil, err
	}
	things, err := a.cfg.Registry.ListThingsInThingGroup(r.PathValue("thingGroupName"), recursive)
	if err != nil {
		return nil, err
	}
	start, end, next, err := page(r, len(things), "maxResults", "nextToken")
	if err != nil {
		return nil, err
	}
	return struct {
		Things    []string `json:"things"`
		NextToken string   `json:"nextToken,omitempty"`
	}{append([]string{}, things[start:end]...), next}, nil
}

func (a *API) listThingGroupsForThing(r *http.Request) (any, error) {
	groups, err := a.cfg.Registry.ListThingGroupsForThing(r.PathValue("thingName"))
	if err != nil {
		return nil, err
	}
	return a.groupList(r, groups)
}

func (a *API) createKeysAndCertificate(r *http.Request) (any, error) {
	active, err := queryBool(r, "setAsActive")
	if err != nil {
		return nil, err
	}
	// The common name AWS gives, and a unit of its own: a broker that
	// tells devices apart by their certificate's subject (Mosquitto's
	// use_subject_as_username) tells these apart too.
	unit := make([]byte, 8)
	rand.Read(unit)
	iss, err := a.cfg.CA.IssueClientSubject(pkix.Name{CommonName: "AWS IoT Certificate", OrganizationalUnit: []string{hex.EncodeToString(unit)}, Organization: []string{"awsfota device"}})
	if err != nil {
		return nil, err
	}
	status := registry.StatusInactive
	if active {
		status = registry.StatusActive
	}
	c, err := a.cfg.Registry.AddCertificate(iss.ID, string(iss.CertPEM), status)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(iss.Cert.PublicKey)
	if err != nil {
		return nil, err
	}
	type keyPair struct {
		PublicKey  string `json:"PublicKey"`
		PrivateKey string `json:"PrivateKey"`
	}
	return struct {
		CertificateArn string  `json:"certificateArn"`
		CertificateID  string  `json:"certificateId"`
		CertificatePem string  `json:"certificatePem"`
		KeyPair        keyPair `json:"keyPair"`
	}{c.ARN, c.ID, c.PEM, keyPair{string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})), string(iss.KeyPEM)}}, nil
}

func (a *API) describeCertificate(r *http.Request) (any, error) {
	c, err := a.cfg.Registry.DescribeCertificate(r.PathValue("certificateId"))
	if err != nil {
		return nil, err
	}
	type validity struct {
		NotBefore epoch `json:"notBefore,omitzero"`
		NotAfter  epoch `json:"notAfter,omitzero"`
	}
	var v validity
	if cert, err := pki.ParseCertificatePEM([]byte(c.PEM)); err == nil {
		v = validity{epoch(cert.NotBefore), epoch(cert.NotAfter)}
	}
	caID := ""
	if a.cfg.CA.Cert != nil {
		caID = pki.CertificateID(a.cfg.CA.Cert)
	}
	return struct {
		D any `json:"certificateDescription"`
	}{struct {
		CertificateArn   string   `json:"certificateArn"`
		CertificateID    string   `json:"certificateId"`
		CACertificateID  string   `json:"caCertificateId,omitempty"`
		Status           string   `json:"status"`
		CertificatePem   string   `json:"certificatePem"`
		OwnedBy          string   `json:"ownedBy"`
		CreationDate     epoch    `json:"creationDate,omitzero"`
		LastModifiedDate epoch    `json:"lastModifiedDate,omitzero"`
		CustomerVersion  int      `json:"customerVersion"`
		GenerationID     string   `json:"generationId"`
		Validity         validity `json:"validity"`
		CertificateMode  string   `json:"certificateMode"`
	}{c.ARN, c.ID, caID, c.Status, c.PEM, a.cfg.AccountID, epoch(c.CreatedAt), epoch(c.CreatedAt), 1, c.ID[:min(len(c.ID), 32)], v, "DEFAULT"}}, nil
}

func (a *API) listCertificates(r *http.Request) (any, error) {
	certs, err := a.cfg.Registry.ListCertificates()
	if err != nil {
		return nil, err
	}
	asc, err := queryBool(r, "isAscendingOrder")
	if err != nil {
		return nil, err
	}
	if !asc {
		sort.SliceStable(certs, func(i, j int) bool { return certs[j].CreatedAt.Before(certs[i].CreatedAt) })
	}
	start, end, next, err := page(r, len(certs), "pageSize", "marker")
	if err != nil {
		return nil, err
	}
	type certificate struct {
		CertificateArn  string `json:"certificateArn"`
		CertificateID   string `json:"certificateId"`
		Status          string `json:"status"`
		CertificateMode string `json:"certificateMode"`
		CreationDate    epoch  `json:"creationDate,omitzero"`
	}
	out := []certificate{}
	for _, c := range certs[start:end] {
		out = append(out, certificate{c.ARN, c.ID, c.Status, "DEFAULT", epoch(c.CreatedAt)})
	}
	return struct {
		Certificates []certificate `json:"certificates"`
		NextMarker   string        `json:"nextMarker,omitempty"`
	}{out, next}, nil
}

func (a *API) updateCertificate(r *http.Request) (any, error) {
	id := r.PathValue("certificateId")
	status := r.URL.Query().Get("newStatus")
	switch status {
	case registry.StatusActive, registry.StatusInactive, registry.StatusRevoked:
	case "":
		return nil, invalid("newStatus is required: ACTIVE, INACTIVE or REVOKED")
	default:
		return nil, invalid("newStatus %q is not supported by the local cloud: use ACTIVE, INACTIVE or REVOKED", status)
	}
	if err := a.cfg.Registry.UpdateCertificateStatus(id, status); err != nil {
		return nil, err
	}
	if status != registry.StatusActive && a.cfg.Disconnect != nil {
		// As on AWS, a certificate that is no longer ACTIVE is refused at
		// once: its live connections go too.
		a.cfg.Disconnect(id)
	}
	if a.cfg.CertificateChanged != nil {
		a.cfg.CertificateChanged(id)
	}
	return nil, nil
}

func (a *API) deleteCertificate(r *http.Request) (any, error) {
	id := r.PathValue("certificateId")
	if err := a.cfg.Registry.DeleteCertificate(id); err != nil {
		return nil, err
	}
	if a.cfg.CertificateChanged != nil {
		a.cfg.CertificateChanged(id)
	}
	return nil, nil
}

// principal reads the certificate a principal ARN names.
func (a *API) principal(r *http.Request) (string, error) {
	p := r.Header.Get("X-Amzn-Principal")
	if p == "" {
		return "", invalid("the principal (x-amzn-principal header) is required: a certificate ARN")
	}
	id, err := a.arnName(p, "cert")
	if err != nil {
		return "", invalid("principal %q: only certificate ARNs (arn:aws:iot:%s:%s:cert/ID) are supported by the local cloud", p, a.cfg.Region, a.cfg.AccountID)
	}
	return id, nil
}

func (a *API) attachThingPrincipal(r *http.Request) (any, error) {
	thing := r.PathValue("thingName")
	id, err := a.principal(r)
	if err != nil {
		return nil, err
	}
	if r.URL.Query().Get("thingPrincipalType") == "EXCLUSIVE_THING" {
		c, err := a.cfg.Registry.DescribeCertificate(id)
		if err != nil {
			return nil, err
		}
		for _, other := range c.Things {
			if other != thing {
				return nil, invalid("certificate %s is attached to %s: it cannot be attached exclusively to %s", id, other, thing)
			}
		}
	}
	if err := a.cfg.Registry.AttachThingPrincipal(thing, id); err != nil {
		return nil, err
	}
	a.principalsChanged()
	return nil, nil
}

// principalsChanged tells the cloud that which certificate may act for
// which thing changed.
func (a *API) principalsChanged() {
	if a.cfg.PrincipalsChanged != nil {
		a.cfg.PrincipalsChanged()
	}
}

func (a *API) detachThingPrincipal(r *http.Request) (any, error) {
	id, err := a.principal(r)
	if err != nil {
		return nil, err
	}
	if err := a.cfg.Registry.DetachThingPrincipal(r.PathValue("thingName"), id); err != nil {
		return nil, err
	}
	a.principalsChanged()
	return nil, nil
}

func (a *API) listThingPrincipals(r *http.Request) (any, error) {
	certs, err := a.cfg.Registry.ThingPrincipals(r.PathValue("thingName"))
	if err != nil {
		return nil, err
	}
	start, end, next, err := page(r, len(certs), "maxResults", "nextToken")
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, c := range certs[start:end] {
		out = append(out, c.ARN)
	}
	return struct {
		Principals []string `json:"principals"`
		NextToken  string   `json:"nextToken,omitempty"`
	}{out, next}, nil
}

func (a *API) describeEndpoint(r *http.Request) (any, error) {
	t := r.URL.Query().Get("endpointType")
	switch t {
	case "":
		t = "iot:Data" // AWS's default
	case "iot:Data", "iot:Data-ATS", "iot:Jobs":
	case "iot:CredentialProvider":
		return nil, invalid("the local cloud serves no iot:CredentialProvider endpoint: devices use MQTT (iot:Data-ATS)")
	default:
		return nil, invalid("endpointType %q: use iot:Data-ATS, iot:Data or iot:Jobs", t)
	}
	addr := ""
	if a.cfg.Endpoint != nil {
		addr = a.cfg.Endpoint(t)
	}
	return map[string]string{"endpointAddress": addr}, nil
}
