;;; usm's decision program: the fixed part of every compiled policy (policy-spec §3 and §4).
;;;
;;; The working memory is kept from cycle to cycle: before each run, Python retracts and
;;; asserts only the facts whose content changed, and Rete does the rest. Derived facts are
;;; asserted under `logical` support, so they disappear with the facts they came from. Each
;;; derivation also calls back into Python (`usm-match`, `usm-winner`, `usm-suppressed`,
;;; `usm-action`), which is how the results leave CLIPS without scanning its fact list.
;;;
;;; Phase 1, judge. A `judged` fact stands for every entity whose term values made at least
;;; one rule condition true (the condition tests run set-wise in polars: they are the alpha
;;; part of the network). The compiled policy adds one defrule per policy rule that checks the
;;; rule's scope and target against the entity and asserts a `match` with the rule's
;;; precedence level. `winner` then picks, per entity, the match of the most specific level,
;;; then the highest priority, then the rule loaded first.
;;;
;;; Phase 2, select. A `candidate` stands for every non-none decision whose streak reached its
;;; threshold, beside the `bounds` of services, the `cooling` cooldowns and the `clock`. The
;;; rules below suppress what bounds or cooldowns forbid and choose at most one action per
;;; service (for containers) or per host. They depend on the clock, which changes every
;;; cycle, so their conclusions are drawn afresh each cycle.

(deftemplate judged
  (slot entity (type STRING))
  (slot kind (type SYMBOL) (allowed-symbols host container))
  (slot service (type STRING))
  (multislot apps (type STRING))
  (multislot matched (type INTEGER)))        ; indices of the rules whose condition is true

(deftemplate match
  (slot entity (type STRING))
  (slot rule (type INTEGER))                 ; the rule's index = its load order
  (slot level (type INTEGER))                ; 1 = most specific
  (slot priority (type INTEGER)))

(deftemplate winner
  (slot entity (type STRING))
  (slot rule (type INTEGER))
  (slot level (type INTEGER)))

(defrule winner
  "The match that decides: most specific level, then highest priority, then loaded first."
  (declare (salience -10))
  (logical
    (match (entity ?e) (rule ?r) (level ?l) (priority ?p))
    (not (match (entity ?e) (level ?l2&:(< ?l2 ?l))))
    (not (match (entity ?e) (level ?l) (priority ?p2&:(> ?p2 ?p))))
    (not (match (entity ?e) (level ?l) (priority ?p) (rule ?r2&:(< ?r2 ?r)))))
  =>
  (assert (winner (entity ?e) (rule ?r) (level ?l)))
  (usm-winner ?e ?r ?l))

;;; --- phase 2 -------------------------------------------------------------------------------

(deftemplate candidate
  (slot entity (type STRING))
  (slot kind (type SYMBOL) (allowed-symbols host container))
  (slot target (type STRING))                ; the service of a container, or the host itself
  (slot decision (type SYMBOL))
  (slot rank (type INTEGER))                 ; decision order: replicate 0, migrate 1, stop 2
  (slot priority (type INTEGER)))

(deftemplate bounds
  (slot service (type STRING))
  (slot replicas (type INTEGER))
  (slot min (type INTEGER))
  (slot max (type INTEGER)))                 ; 0 = unlimited

(deftemplate cooling
  (slot kind (type SYMBOL))
  (slot target (type STRING))
  (slot decision (type SYMBOL))
  (slot until (type NUMBER)))

(deftemplate clock (slot now (type NUMBER)))

(deftemplate suppressed
  (slot entity (type STRING))
  (slot reason (type STRING)))

(deftemplate action (slot entity (type STRING)))

(defrule at-max-replicas
  (declare (salience 20))
  (logical
    (clock)
    (candidate (entity ?e) (kind container) (target ?s) (decision replicate))
    (bounds (service ?s) (replicas ?n) (max ?m&:(> ?m 0)&:(>= ?n ?m))))
  (not (suppressed (entity ?e)))
  =>
  (bind ?reason (str-cat "max_replicas: " ?s " has " ?n " of at most " ?m " replicas"))
  (assert (suppressed (entity ?e) (reason ?reason)))
  (usm-suppressed ?e ?reason))

(defrule at-min-replicas
  (declare (salience 20))
  (logical
    (clock)
    (candidate (entity ?e) (kind container) (target ?s) (decision stop))
    (bounds (service ?s) (replicas ?n) (min ?m&:(<= ?n ?m))))
  (not (suppressed (entity ?e)))
  =>
  (bind ?reason (str-cat "min_replicas: " ?s " has " ?n " of at least " ?m " replicas"))
  (assert (suppressed (entity ?e) (reason ?reason)))
  (usm-suppressed ?e ?reason))

(defrule cooling-down
  (declare (salience 10))
  (logical
    (clock (now ?now))
    (candidate (entity ?e) (kind ?k) (target ?t) (decision ?d))
    (cooling (kind ?k) (target ?t) (decision ?d) (until ?u&:(< ?now ?u))))
  (not (suppressed (entity ?e)))
  =>
  (bind ?reason (str-cat "cooldown: " ?d " on " ?t " until " ?u))
  (assert (suppressed (entity ?e) (reason ?reason)))
  (usm-suppressed ?e ?reason))

(defrule choose
  "At most one action per target: the best candidate that is not suppressed."
  (declare (salience -10))
  (logical
    (clock)
    (candidate (entity ?e) (kind ?k) (target ?t) (rank ?r) (priority ?p)))
  (not (suppressed (entity ?e)))
  (not (and (candidate (entity ?o&~?e) (kind ?k) (target ?t) (rank ?ro) (priority ?po))
            (not (suppressed (entity ?o)))
            (test (or (< ?ro ?r)
                      (and (= ?ro ?r) (> ?po ?p))
                      (and (= ?ro ?r) (= ?po ?p) (< (str-compare ?o ?e) 0))))))
  =>
  (assert (action (entity ?e)))
  (usm-action ?e))
