package iotapi

import (
	"net/http"

	"github.com/awsfota/awsfota/cloud/jobsvc"
)

// Job templates and the event configuration.

type createJobTemplateInput struct {
	JobArn                     string                     `json:"jobArn"`
	DocumentSource             string                     `json:"documentSource"`
	Document                   *string                    `json:"document"`
	Description                string                     `json:"description"`
	PresignedURLConfig         *jobsvc.PresignedURLConfig `json:"presignedUrlConfig"`
	JobExecutionsRolloutConfig *jobsvc.RolloutConfig      `json:"jobExecutionsRolloutConfig"`
	AbortConfig                *jobsvc.AbortConfig        `json:"abortConfig"`
	TimeoutConfig              *jobsvc.TimeoutConfig      `json:"timeoutConfig"`
	JobExecutionsRetryConfig   *jobsvc.RetryConfig        `json:"jobExecutionsRetryConfig"`
	MaintenanceWindows         []jobsvc.MaintenanceWindow `json:"maintenanceWindows"`
	DestinationPackageVersions []string                   `json:"destinationPackageVersions"`
	// tags are accepted and not kept.
}

func (a *API) createJobTemplate(r *http.Request) (any, error) {
	var in createJobTemplateInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if len(in.DestinationPackageVersions) > 0 {
		return nil, invalid("destinationPackageVersions is not supported by the awsfota local cloud; create the template without it")
	}
	if in.Description == "" {
		return nil, invalid("description is required")
	}
	spec := jobsvc.TemplateSpec{ID: r.PathValue("jobTemplateId"), Description: in.Description,
		Settings: jobsvc.Settings{PresignedURL: in.PresignedURLConfig, Timeout: in.TimeoutConfig, Rollout: in.JobExecutionsRolloutConfig,
			Abort: in.AbortConfig, Retry: in.JobExecutionsRetryConfig}, MaintenanceWindows: in.MaintenanceWindows}
	if in.JobArn != "" {
		if in.Document != nil || in.DocumentSource != "" {
			return nil, invalid("give either jobArn or a document (document or documentSource), not both")
		}
		id, err := a.arnName(in.JobArn, "job")
		if err != nil {
			return nil, err
		}
		spec.JobID = id
	} else {
		var err error
		if spec.Document, spec.DocumentSource, err = a.document(in.Document, in.DocumentSource, false); err != nil {
			return nil, err
		}
	}
	t, err := a.cfg.Jobs.CreateJobTemplate(spec)
	if err != nil {
		return nil, err
	}
	return map[string]string{"jobTemplateArn": t.ARN, "jobTemplateId": t.ID}, nil
}

func (a *API) describeJobTemplate(r *http.Request) (any, error) {
	t, err := a.cfg.Jobs.DescribeJobTemplate(r.PathValue("jobTemplateId"))
	if err != nil {
		return nil, err
	}
	return struct {
		JobTemplateArn             string                     `json:"jobTemplateArn"`
		JobTemplateID              string                     `json:"jobTemplateId"`
		Description                string                     `json:"description,omitempty"`
		DocumentSource             string                     `json:"documentSource,omitempty"`
		Document                   string                     `json:"document"`
		CreatedAt                  epoch                      `json:"createdAt,omitzero"`
		PresignedURLConfig         *jobsvc.PresignedURLConfig `json:"presignedUrlConfig,omitempty"`
		JobExecutionsRolloutConfig *jobsvc.RolloutConfig      `json:"jobExecutionsRolloutConfig,omitempty"`
		AbortConfig                *jobsvc.AbortConfig        `json:"abortConfig,omitempty"`
		TimeoutConfig              *jobsvc.TimeoutConfig      `json:"timeoutConfig,omitempty"`
		JobExecutionsRetryConfig   *jobsvc.RetryConfig        `json:"jobExecutionsRetryConfig,omitempty"`
		MaintenanceWindows         []jobsvc.MaintenanceWindow `json:"maintenanceWindows,omitempty"`
	}{t.ARN, t.ID, t.Description, t.DocumentSource, t.Document, epoch(t.CreatedAt), t.PresignedURL, t.Rollout, t.Abort,
		t.Timeout, t.Retry, t.MaintenanceWindows}, nil
}

func (a *API) listJobTemplates(r *http.Request) (any, error) {
	ts, err := a.cfg.Jobs.ListJobTemplates()
	if err != nil {
		return nil, err
	}
	start, end, next, err := page(r, len(ts), "maxResults", "nextToken")
	if err != nil {
		return nil, err
	}
	type summary struct {
		JobTemplateArn string `json:"jobTemplateArn"`
		JobTemplateID  string `json:"jobTemplateId"`
		Description    string `json:"description,omitempty"`
		CreatedAt      epoch  `json:"createdAt,omitzero"`
	}
	out := []summary{}
	for _, t := range ts[start:end] {
		out = append(out, summary{t.ARN, t.ID, t.Description, epoch(t.CreatedAt)})
	}
	return struct {
		JobTemplates []summary `json:"jobTemplates"`
		NextToken    string    `json:"nextToken,omitempty"`
	}{out, next}, nil
}

func (a *API) deleteJobTemplate(r *http.Request) (any, error) {
	return nil, a.cfg.Jobs.DeleteJobTemplate(r.PathValue("jobTemplateId"))
}

// The local cloud has none of AWS's managed job templates (AWS-Reboot,
// AWS-Download-File, ...): the list is empty and each is not found.

func (a *API) listManagedJobTemplates(r *http.Request) (any, error) {
	if _, _, _, err := page(r, 0, "maxResults", "nextToken"); err != nil {
		return nil, err
	}
	return map[string][]any{"managedJobTemplates": {}}, nil
}

func (a *API) describeManagedJobTemplate(r *http.Request) (any, error) {
	return nil, notFound("managed job template %s does not exist: the local cloud has no AWS managed templates; use CreateJobTemplate", r.PathValue("templateName"))
}

// eventConfiguration is AWS's Configuration shape (its member is
// capitalised on the wire).
type eventConfiguration struct {
	Enabled bool `json:"Enabled"`
}

func (a *API) describeEventConfigurations(r *http.Request) (any, error) {
	c, err := a.cfg.Jobs.EventConfigurations()
	if err != nil {
		return nil, err
	}
	out := map[string]eventConfiguration{}
	for t, on := range c.Enabled {
		out[t] = eventConfiguration{on}
	}
	return struct {
		EventConfigurations map[string]eventConfiguration `json:"eventConfigurations"`
		CreationDate        epoch                         `json:"creationDate,omitzero"`
		LastModifiedDate    epoch                         `json:"lastModifiedDate,omitzero"`
	}{out, epoch(c.CreationDate), epoch(c.LastModifiedDate)}, nil
}

func (a *API) updateEventConfigurations(r *http.Request) (any, error) {
	var in struct {
		EventConfigurations map[string]eventConfiguration `json:"eventConfigurations"`
	}
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for t, c := range in.EventConfigurations {
		set[t] = c.Enabled
	}
	return nil, a.cfg.Jobs.UpdateEventConfigurations(set)
}
