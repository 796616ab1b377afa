package jobsvc

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
	bolt "go.etcd.io/bbolt"
)

// JobTemplate is a job template: a document and settings that CreateJob
// (jobTemplateArn) starts from.
type JobTemplate struct {
	ID          string `json:"jobTemplateId"`
	ARN         string `json:"jobTemplateArn"`
	Description string `json:"description,omitempty"`
	// Document is the template's job document exactly as given.
	Document       string `json:"document"`
	DocumentSource string `json:"documentSource,omitempty"`
	// JobARN is the job the template was made from, if any.
	JobARN string `json:"jobArn,omitempty"`
	Settings
	MaintenanceWindows []MaintenanceWindow `json:"maintenanceWindows,omitempty"`
	CreatedAt          time.Time           `json:"createdAt"`
}

// TemplateSpec describes a job template to create: from a document (or
// documentSource) and settings, or from an existing job (JobID), whose
// document and settings it copies unless given.
type TemplateSpec struct {
	ID                 string
	Description        string
	Document           []byte
	DocumentSource     string
	JobID              string
	Settings           Settings
	MaintenanceWindows []MaintenanceWindow
}

// TemplateARN returns a job template's ARN.
func (s *Service) TemplateARN(id string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:jobtemplate/%s", s.cfg.Region, s.cfg.AccountID, id)
}

// CreateJobTemplate stores a job template. Errors wrap ErrInvalid,
// ErrNotFound (the job to copy) or ErrExists.
func (s *Service) CreateJobTemplate(spec TemplateSpec) (JobTemplate, error) {
	if err := iotjobs.ValidateJobID(spec.ID); err != nil {
		return JobTemplate{}, fmt.Errorf("%w: jobTemplateId: %v", ErrInvalid, err)
	}
	t := JobTemplate{ID: spec.ID, ARN: s.TemplateARN(spec.ID), Description: spec.Description, Document: string(spec.Document),
		DocumentSource: spec.DocumentSource, Settings: spec.Settings, MaintenanceWindows: slices.Clone(spec.MaintenanceWindows)}
	if spec.JobID != "" {
		if spec.Document != nil {
			return JobTemplate{}, fmt.Errorf("%w: give either jobArn or a document, not both", ErrInvalid)
		}
		j, err := s.DescribeJob(spec.JobID)
		if err != nil {
			return JobTemplate{}, err
		}
		t.JobARN, t.Document, t.DocumentSource = j.ARN, j.Document, j.DocumentSource
		if t.Description == "" {
			t.Description = j.Description
		}
		t.Settings.merge(j.Settings, true)
		if t.MaintenanceWindows == nil && j.Scheduling != nil {
			t.MaintenanceWindows = j.Scheduling.MaintenanceWindows
		}
	} else if spec.Document == nil {
		return JobTemplate{}, fmt.Errorf("%w: a job template needs a document, a documentSource or the jobArn of a job to copy", ErrInvalid)
	}
	if err := validateDocument([]byte(t.Document)); err != nil {
		return JobTemplate{}, err
	}
	if err := validateDescription(t.Description); err != nil {
		return JobTemplate{}, err
	}
	if err := validateConfig(t.Settings); err != nil {
		return JobTemplate{}, err
	}
	if _, err := parseWindows(t.MaintenanceWindows); err != nil {
		return JobTemplate{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := findPlaceholders([]byte(t.Document)); err != nil {
		return JobTemplate{}, fmt.Errorf("%w: the job document: %v", ErrInvalid, err)
	}
	t.CreatedAt = s.cfg.Clock.Now().UTC()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTemplates)
		if b.Get([]byte(t.ID)) != nil {
			return fmt.Errorf("%w: job template %s exists; choose another id", ErrExists, t.ID)
		}
		v, err := json.Marshal(t)
		if err != nil {
			return err
		}
		return b.Put([]byte(t.ID), v)
	})
	return t, err
}

// DescribeJobTemplate returns a job template.
func (s *Service) DescribeJobTemplate(id string) (JobTemplate, error) {
	var t JobTemplate
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTemplates).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("%w: job template %s does not exist", ErrNotFound, id)
		}
		return json.Unmarshal(v, &t)
	})
	return t, err
}

// ListJobTemplates returns every job template, newest first.
func (s *Service) ListJobTemplates() ([]JobTemplate, error) {
	var out []JobTemplate
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTemplates).ForEach(func(_, v []byte) error {
			var t JobTemplate
			if err := json.Unmarshal(v, &t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[j].CreatedAt.Before(out[i].CreatedAt) })
	return out, err
}

// DeleteJobTemplate deletes a job template; jobs made from it are not
// affected. Deleting one that does not exist is ErrNotFound.
func (s *Service) DeleteJobTemplate(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTemplates)
		if b.Get([]byte(id)) == nil {
			return fmt.Errorf("%w: job template %s does not exist", ErrNotFound, id)
		}
		return b.Delete([]byte(id))
	})
}
