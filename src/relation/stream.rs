//! The relation stream: tasks of relations, each with its train and test sentences (split by
//! entity pair when the data was derived), the relations' names, and the unlabelled pool.

use super::RelationError;
use super::encoder::Vectors;
use super::instance::Instance;
use crate::tasks::Example;

#[derive(Debug, Clone)]
pub struct Relation {
    pub label: String,
    /// The name as words ("birth place"): its pseudo-sentence starts the prototype.
    pub words: String,
    pub name: Instance,
}

#[derive(Debug, Clone)]
pub struct Item {
    /// The sentence as given, with `[[..]]` and `<<..>>`.
    pub marked: String,
    pub instance: Instance,
    /// Index into `Stream::relations`; for the pool, the true relation when known (never read
    /// by a learner: retrieval quality only).
    pub relation: Option<usize>,
    pub truth: String,
}

#[derive(Debug, Clone)]
pub struct RelationTask {
    pub name: String,
    pub relations: Vec<usize>,
    pub train: Vec<Item>,
    pub test: Vec<Item>,
}

/// One task as read from the data or pasted: name, (label, words) per relation, train, test.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskSpec {
    pub name: String,
    pub relations: Vec<(String, String)>,
    pub train: Vec<Example>,
    pub test: Vec<Example>,
}

#[derive(Debug, Clone)]
pub struct Stream {
    pub relations: Vec<Relation>,
    pub tasks: Vec<RelationTask>,
    pub pool: Vec<Item>,
}

fn items(
    examples: &[Example],
    relations: &[Relation],
    labelled: bool,
    at: &str,
) -> Result<Vec<Item>, RelationError> {
    examples
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let instance = Instance::parse(&e.input)
                .map_err(|err| RelationError::Data(format!("{at} line {}: {err}", i + 1)))?;
            let relation = relations.iter().position(|r| r.label == e.target);
            if labelled && relation.is_none() {
                return Err(RelationError::Data(format!(
                    "{at} line {}: relation {:?} is not one of the task's",
                    i + 1,
                    e.target
                )));
            }
            Ok(Item {
                marked: e.input.clone(),
                instance,
                relation,
                truth: e.target.clone(),
            })
        })
        .collect()
}

impl Stream {
    pub fn new(specs: Vec<TaskSpec>, pool: &[Example]) -> Result<Self, RelationError> {
        if specs.is_empty() {
            return Err(RelationError::Data(
                "the relation stream has no task".into(),
            ));
        }
        let mut relations: Vec<Relation> = Vec::new();
        let mut tasks = Vec::new();
        for spec in specs {
            let mut ids = Vec::new();
            for (label, words) in &spec.relations {
                if relations.iter().any(|r| &r.label == label) {
                    return Err(RelationError::Data(format!(
                        "task {}: relation {label:?} was already learned in an earlier task",
                        spec.name
                    )));
                }
                ids.push(relations.len());
                relations.push(Relation {
                    label: label.clone(),
                    words: words.clone(),
                    name: Instance::for_relation(words),
                });
            }
            if ids.len() < 2 {
                return Err(RelationError::Data(format!(
                    "task {}: one relation only; a task needs at least two to tell apart",
                    spec.name
                )));
            }
            let train = items(
                &spec.train,
                &relations,
                true,
                &format!("task {} train", spec.name),
            )?;
            let test = items(
                &spec.test,
                &relations,
                true,
                &format!("task {} test", spec.name),
            )?;
            for &r in &ids {
                if !train.iter().any(|i| i.relation == Some(r)) {
                    return Err(RelationError::Data(format!(
                        "task {}: relation {:?} has no training example",
                        spec.name, relations[r].label
                    )));
                }
            }
            tasks.push(RelationTask {
                name: spec.name,
                relations: ids,
                train,
                test,
            });
        }
        let pool = items(pool, &relations, false, "pool")?;
        Ok(Self {
            relations,
            tasks,
            pool,
        })
    }

    /// Every sentence the encoder must read: names, train, test, pool.
    pub fn instances(&self) -> Vec<&Instance> {
        let names = self.relations.iter().map(|r| &r.name);
        let tasks = self
            .tasks
            .iter()
            .flat_map(|t| t.train.iter().chain(&t.test).map(|i| &i.instance));
        names
            .chain(tasks)
            .chain(self.pool.iter().map(|i| &i.instance))
            .collect()
    }

    /// Checks that `vectors` holds every sentence (so a learner's look-ups cannot fail).
    pub fn check_encoded(&self, vectors: &Vectors) -> Result<(), RelationError> {
        match self
            .instances()
            .into_iter()
            .find(|i| vectors.get(&i.text).is_none())
        {
            Some(i) => Err(RelationError::Data(format!("{:?} was not encoded", i.text))),
            None => Ok(()),
        }
    }
}
