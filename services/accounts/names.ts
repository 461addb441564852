import { RegExpMatcher, englishDataset, englishRecommendedTransformers } from 'obscenity'

// Built once: the matcher compiles every pattern of the dataset.
const matcher = new RegExpMatcher({ ...englishDataset.build(), ...englishRecommendedTransformers })

export function isProfane (text: string): boolean {
  return matcher.hasMatch(text)
}
